/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A private swtpm for a unit test: a child process on a random free loopback port pair with its
 * state in a temporary directory, so tests running in parallel never share a TPM. Header-only
 * (static inline) because every test is its own program.
 */
#ifndef TC_TEST_SWTPM_FIXTURE_H
#define TC_TEST_SWTPM_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct swtpm {
    pid_t pid;
    int port;
    char dir[256];  /* the state directory (swtpm_new) or its parent (see tpm_test.c) */
    char tcti[128]; /* "swtpm:host=127.0.0.1,port=N" once started */
};

static inline int swtpm_port_free(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(s);
    return ok;
}

static inline int swtpm_port_ready(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(s);
    return ok;
}

static inline void swtpm_rm_rf(const char *dir)
{
    char cmd[512];
    if (dir[0] == 0)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Starts swtpm in the foreground (a child we can kill and reap) on the existing state directory
 * t->dir. Another process may take the port between our check and swtpm's bind: then swtpm
 * exits and another port is tried. 0 or -1. */
static inline int swtpm_start(struct swtpm *t)
{
    srand((unsigned)(getpid() ^ time(NULL)));
    for (int attempt = 0; attempt < 20; attempt++) {
        int port = 20000 + rand() % 40000;
        if (!swtpm_port_free(port) || !swtpm_port_free(port + 1))
            continue;
        char server[96], ctrl[96], state[300];
        snprintf(server, sizeof(server), "type=tcp,port=%d,bindaddr=127.0.0.1", port);
        snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%d,bindaddr=127.0.0.1", port + 1);
        snprintf(state, sizeof(state), "dir=%s", t->dir);
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            int devnull = open("/dev/null", O_RDWR);
            if (devnull >= 0) {
                dup2(devnull, 1);
                dup2(devnull, 2);
            }
            execlp("swtpm", "swtpm", "socket", "--tpm2", "--server", server, "--ctrl", ctrl,
                   "--tpmstate", state, "--flags", "not-need-init,startup-clear", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 300; i++) {
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break; /* lost a port race: try another */
            if (swtpm_port_ready(port)) {
                t->pid = pid;
                t->port = port;
                snprintf(t->tcti, sizeof(t->tcti), "swtpm:host=127.0.0.1,port=%d", port);
                return 0;
            }
            usleep(10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

/* Stops the process only (the state directory stays). */
static inline void swtpm_stop(struct swtpm *t)
{
    if (t->pid <= 0)
        return;
    /* swtpm may sit in a read on a connection a failed test left open: give SIGTERM a second,
     * then make sure. */
    kill(t->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        pid_t r = waitpid(t->pid, NULL, WNOHANG);
        if (r == t->pid || (r < 0 && errno != EINTR)) {
            t->pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(t->pid, SIGKILL);
    waitpid(t->pid, NULL, 0);
    t->pid = 0;
}

/* A fresh state directory "$TMPDIR/<prefix>.XXXXXX" and a swtpm on it. 0 or -1; either way
 * swtpm_free() cleans up. */
static inline int swtpm_new(struct swtpm *t, const char *prefix)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "%s/%s.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             prefix);
    if (mkdtemp(t->dir) == NULL) {
        t->dir[0] = 0;
        return -1;
    }
    return swtpm_start(t);
}

/* Stops the swtpm and removes its directory. A zeroed or already freed t is a no-op. */
static inline void swtpm_free(struct swtpm *t)
{
    swtpm_stop(t);
    swtpm_rm_rf(t->dir);
    memset(t, 0, sizeof(*t));
}

#endif
