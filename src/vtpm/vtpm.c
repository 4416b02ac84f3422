/* SPDX-License-Identifier: Apache-2.0 */
/* vTPM instances: one swtpm process per VM (see trustcloud/vtpm.h). */
#define _GNU_SOURCE /* pipe2, closefrom, nftw */
#define LOGMODULE "vtpm"
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/tpm_nv.h"
#include "trustcloud/vtpm.h"

/* swtpm control channel command (swtpm's tpm_ioctl.h): any answer proves that swtpm finished
 * its start-up (state decrypted, TPM initialised in TCP mode) and runs its main loop. */
#define PTM_CMD_GET_CAPABILITY 1u
#define STOP_WAIT_MS 2000
#define READY_DEFAULT_MS 5000
#define PORT_TRIES 64
#define PID_FILE_MAX 32

struct tc_vtpm {
    char id[TC_VTPM_ID_MAX + 1];
    char dir[PATH_MAX];
    enum tc_vtpm_mode mode;
    uint8_t key[TC_VTPM_KEY_LEN];
    bool has_key;
    char swtpm[PATH_MAX];
    unsigned ready_ms;
    pid_t pid;
    bool child; /* started by this process: reap it with waitpid */
    uint16_t port;
    char tcti[64];
    char ctrl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uint8_t ek_pub[TC_TPM_MAX_PUBLIC];
    size_t ek_pub_len;
};

bool tc_vtpm_id_valid(const char *id)
{
    if (id == NULL)
        return false;
    size_t n = strnlen(id, TC_VTPM_ID_MAX + 1);
    if (n == 0 || n > TC_VTPM_ID_MAX || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return (n < 0 || (size_t)n >= cap) ? TC_ERR_INVALID_ARG : 0;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Alive and still swtpm (not a zombie, not a recycled pid). */
static bool swtpm_alive(pid_t pid)
{
    char path[64], buf[512];
    if (pid <= 0 || kill(pid, 0) != 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": comm may contain anything, so look after the last ')'. */
    char *close = strrchr(buf, ')');
    char *open = strchr(buf, '(');
    if (close == NULL || open == NULL || close[1] != ' ' || close[2] == 'Z' || close[2] == 'X')
        return false;
    return (size_t)(close - open - 1) == strlen("swtpm") && strncmp(open + 1, "swtpm", 5) == 0;
}

/* The text of the small file dir/name (at most cap - 1 bytes, NUL-terminated, no symlink
 * followed) into buf: true when there was some. */
static bool read_small_file(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[PATH_MAX];
    if (path_join(path, sizeof(path), dir, name) != 0)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return true;
}

static pid_t read_pid_file(const char *dir)
{
    char buf[PID_FILE_MAX];
    if (!read_small_file(dir, "swtpm.pid", buf, sizeof(buf)))
        return 0;
    char *end;
    errno = 0;
    long p = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\0' && *end != '\n') || p <= 1 || p > INT_MAX)
        return 0;
    return swtpm_alive((pid_t)p) ? (pid_t)p : 0;
}

/* A listening TCP socket on 127.0.0.1:port, or -1. */
static int listen_tcp(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Finds P with P and P + 1 free (the tpm2-tss swtpm TCTI wants control = TPM port + 1) and
 * keeps both bound: the control socket is handed to swtpm as it is; P is released just before
 * swtpm binds it itself (swtpm 0.7.1 takes a passed --server fd for an accepted connection and
 * exits when it closes), and a start that loses P to someone else in that window is retried. */
static int listen_pair(int fds[2], uint16_t *port)
{
    for (int i = 0; i < PORT_TRIES; i++) {
        uint16_t r;
        if (RAND_bytes((uint8_t *)&r, sizeof(r)) != 1)
            return TC_ERR_CRYPTO;
        uint16_t p = (uint16_t)(20000 + r % 40000);
        if ((fds[0] = listen_tcp(p)) < 0)
            continue;
        if ((fds[1] = listen_tcp((uint16_t)(p + 1))) < 0) {
            close(fds[0]);
            fds[0] = -1;
            continue;
        }
        *port = p;
        return 0;
    }
    LOG_ERROR("no free pair of loopback ports after %d tries", PORT_TRIES);
    return TC_ERR_IO;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(path); /* a stale socket of a stopped instance */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(path, 0600) != 0 ||
        listen(fd, 4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One control-channel round trip; true when swtpm answered. */
static bool ctrl_probe(const struct tc_vtpm *v, int timeout_ms)
{
    int fd;
    if (v->mode == TC_VTPM_TCP) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(v->port + 1))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            goto fail;
    } else {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, v->ctrl_path, strlen(v->ctrl_path) + 1);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            goto fail;
    }
    uint32_t cmd = htonl(PTM_CMD_GET_CAPABILITY);
    if (send(fd, &cmd, sizeof(cmd), MSG_NOSIGNAL) != (ssize_t)sizeof(cmd))
        goto fail;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint8_t buf[16];
    if (poll(&p, 1, timeout_ms) != 1 || recv(fd, buf, sizeof(buf), 0) <= 0)
        goto fail;
    close(fd);
    return true;
fail:
    if (fd >= 0)
        close(fd);
    return false;
}

/* Logs the end of swtpm's log, which says why it exited (e.g. a state it cannot decrypt). */
static void log_swtpm_output(const struct tc_vtpm *v)
{
    char path[PATH_MAX], buf[512];
    if (path_join(path, sizeof(path), v->dir, "swtpm.log") != 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    if (end > (off_t)sizeof(buf) - 1)
        lseek(fd, end - (off_t)sizeof(buf) + 1, SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n' || (unsigned char)buf[i] < 0x20)
                buf[i] = ' ';
        LOG_ERROR("vTPM %s: swtpm said: %s", v->id, buf);
    }
}

/* Whether swtpm's last words were about a TCP port it could not bind. */
static bool log_says_port_taken(const struct tc_vtpm *v)
{
    char path[PATH_MAX], buf[512];
    if (path_join(path, sizeof(path), v->dir, "swtpm.log") != 0)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    off_t end = lseek(fd, 0, SEEK_END);
    lseek(fd, end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0, SEEK_SET);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strstr(buf, "in use") != NULL || strstr(buf, "bind") != NULL;
}

static void reap(struct tc_vtpm *v)
{
    if (v->pid <= 0)
        return;
    if (v->child) {
        int st;
        long deadline = now_ms() + STOP_WAIT_MS;
        for (;;) {
            pid_t r = waitpid(v->pid, &st, WNOHANG);
            if (r == v->pid || (r < 0 && errno == ECHILD))
                break;
            if (now_ms() > deadline) {
                kill(v->pid, SIGKILL);
                waitpid(v->pid, &st, 0);
                break;
            }
            sleep_ms(2);
        }
    } else {
        long deadline = now_ms() + STOP_WAIT_MS;
        while (swtpm_alive(v->pid)) {
            if (now_ms() > deadline) {
                kill(v->pid, SIGKILL);
                deadline = now_ms() + STOP_WAIT_MS;
            }
            sleep_ms(2);
        }
    }
    v->pid = 0;
    v->child = false;
}

/* Moves fd to a descriptor >= 16 so that the dup2()s to 3..5 below cannot clobber a source. */
static int high_fd(int fd)
{
    return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 16);
}

/* Internal: swtpm could not bind the TPM port it was given; another try picks new ports. */
#define TC_ERR_BUSY_PORT (-1000)
#define SPAWN_TRIES 5

static int spawn_once(struct tc_vtpm *v)
{
    int lfd[2] = {-1, -1}, keyp[2] = {-1, -1}, logfd = -1, rc = 0;
    char state[PATH_MAX + 32], pidf[PATH_MAX + 32], path[PATH_MAX], server[64];
    pid_t pid;

    v->port = 0;
    v->tcti[0] = '\0';
    if (v->mode == TC_VTPM_TCP) {
        if ((rc = listen_pair(lfd, &v->port)) != 0)
            goto out;
    } else if ((lfd[1] = listen_unix(v->ctrl_path)) < 0) {
        LOG_ERROR("vTPM %s: cannot listen on its control socket: %s", v->id, strerror(errno));
        rc = TC_ERR_IO;
        goto out;
    }
    if (v->has_key) {
        /* The key travels through a pipe swtpm reads at start-up: it never touches disk and
         * 32 bytes fit the pipe buffer, so writing before the fork cannot block. */
        if (pipe2(keyp, O_CLOEXEC) != 0 ||
            write(keyp[1], v->key, sizeof(v->key)) != (ssize_t)sizeof(v->key)) {
            rc = TC_ERR_IO;
            goto out;
        }
        close(keyp[1]);
        keyp[1] = -1;
    }
    if ((rc = path_join(path, sizeof(path), v->dir, "swtpm.log")) != 0)
        goto out;
    if ((logfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
        rc = TC_ERR_IO;
        goto out;
    }
    if (snprintf(state, sizeof(state), "dir=%s/state,mode=0600", v->dir) >= (int)sizeof(state) ||
        snprintf(pidf, sizeof(pidf), "file=%s/swtpm.pid", v->dir) >= (int)sizeof(pidf)) {
        rc = TC_ERR_INVALID_ARG;
        goto out;
    }
    const char *argv[24];
    int a = 0;
    argv[a++] = v->swtpm;
    argv[a++] = "socket";
    argv[a++] = "--tpm2";
    argv[a++] = "--tpmstate";
    argv[a++] = state;
    argv[a++] = "--pid";
    argv[a++] = pidf;
    if (v->mode == TC_VTPM_TCP) {
        snprintf(server, sizeof(server), "type=tcp,port=%u,bindaddr=127.0.0.1", (unsigned)v->port);
        argv[a++] = "--server";
        argv[a++] = server;
        argv[a++] = "--ctrl";
        argv[a++] = "type=tcp,fd=3";
        argv[a++] = "--flags";
        argv[a++] = "not-need-init,startup-clear";
    } else {
        argv[a++] = "--ctrl";
        argv[a++] = "type=unixio,fd=3";
    }
    if (v->has_key) {
        argv[a++] = "--key";
        argv[a++] = "fd=4,format=binary,mode=aes-256-cbc";
    }
    argv[a] = NULL;

    int src[2] = {high_fd(lfd[1]), high_fd(keyp[0])};
    int hlog = high_fd(logfd);
    if (src[0] < 0 || (keyp[0] >= 0 && src[1] < 0) || hlog < 0) {
        for (int i = 0; i < 2; i++)
            if (src[i] >= 0)
                close(src[i]);
        if (hlog >= 0)
            close(hlog);
        rc = TC_ERR_IO;
        goto out;
    }
    if (lfd[0] >= 0) {
        close(lfd[0]);
        lfd[0] = -1;
    }
    pid = fork();
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(hlog, 1) < 0 || dup2(hlog, 2) < 0)
            _exit(126);
        for (int i = 0; i < 2; i++)
            if (src[i] >= 0 && dup2(src[i], 3 + i) < 0)
                _exit(126);
        /* Nothing else of this process (other vTPMs' sockets and pipes) leaks into swtpm. */
        closefrom(5);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 2; i++)
        if (src[i] >= 0)
            close(src[i]);
    close(hlog);
    if (pid < 0) {
        rc = TC_ERR_IO;
        goto out;
    }
    v->pid = pid;
    v->child = true;

    /* Ready when swtpm answers on its control channel; an exit first is a failed start. */
    long deadline = now_ms() + (long)v->ready_ms;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            v->pid = 0;
            v->child = false;
            if (v->mode == TC_VTPM_TCP && log_says_port_taken(v)) {
                LOG_INFO("vTPM %s: port %u was taken meanwhile, retrying", v->id,
                         (unsigned)v->port);
                rc = TC_ERR_BUSY_PORT;
                goto out;
            }
            LOG_ERROR("vTPM %s: swtpm exited at start-up (status %d)", v->id, st);
            log_swtpm_output(v);
            rc = TC_ERR_IO;
            goto out;
        }
        if (ctrl_probe(v, 50))
            break;
        if (now_ms() > deadline) {
            LOG_ERROR("vTPM %s: swtpm did not answer within %u ms", v->id, v->ready_ms);
            kill(pid, SIGKILL);
            reap(v);
            rc = TC_ERR_IO;
            goto out;
        }
        sleep_ms(1);
    }
    if (v->mode == TC_VTPM_TCP)
        snprintf(v->tcti, sizeof(v->tcti), "swtpm:host=127.0.0.1,port=%u", (unsigned)v->port);
out:
    if (rc != 0)
        v->port = 0;
    for (int i = 0; i < 2; i++)
        if (lfd[i] >= 0)
            close(lfd[i]);
    if (keyp[0] >= 0)
        close(keyp[0]);
    if (keyp[1] >= 0)
        close(keyp[1]);
    if (logfd >= 0)
        close(logfd);
    return rc;
}

static int spawn(struct tc_vtpm *v)
{
    int rc = TC_ERR_IO;
    for (int i = 0; i < SPAWN_TRIES; i++)
        if ((rc = spawn_once(v)) != TC_ERR_BUSY_PORT)
            return rc;
    LOG_ERROR("vTPM %s: no usable TCP port after %d tries", v->id, SPAWN_TRIES);
    return TC_ERR_IO;
}

/* Port file: lets tc_vtpm_open find the TCP port of a running instance started elsewhere. */
static void write_port_file(const struct tc_vtpm *v)
{
    char path[PATH_MAX];
    if (path_join(path, sizeof(path), v->dir, "swtpm.port") != 0)
        return;
    FILE *f = fopen(path, "we");
    if (f == NULL)
        return;
    fprintf(f, "%u\n", (unsigned)v->port);
    fclose(f);
}

static uint16_t read_port_file(const char *dir)
{
    char buf[16];
    if (!read_small_file(dir, "swtpm.port", buf, sizeof(buf)))
        return 0;
    long p = strtol(buf, NULL, 10);
    return (p > 0 && p < 65535) ? (uint16_t)p : 0;
}

static int handle_new(const struct tc_vtpm_config *cfg, struct tc_vtpm **out)
{
    *out = NULL;
    if (cfg == NULL || cfg->base_dir == NULL || !tc_vtpm_id_valid(cfg->vm_id) ||
        (cfg->mode != TC_VTPM_TCP && cfg->mode != TC_VTPM_QEMU)) {
        LOG_ERROR("invalid vTPM configuration (vm id, base dir or mode)");
        return TC_ERR_INVALID_ARG;
    }
    struct tc_vtpm *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return TC_ERR_ALLOC;
    int rc = path_join(v->dir, sizeof(v->dir), cfg->base_dir, cfg->vm_id);
    if (rc == 0 && cfg->mode == TC_VTPM_QEMU)
        rc = path_join(v->ctrl_path, sizeof(v->ctrl_path), v->dir, "ctrl.sock");
    if (rc == 0 && snprintf(v->swtpm, sizeof(v->swtpm), "%s", cfg->swtpm ? cfg->swtpm : "swtpm") >=
                       (int)sizeof(v->swtpm))
        rc = TC_ERR_INVALID_ARG;
    if (rc != 0) {
        free(v);
        return rc;
    }
    memcpy(v->id, cfg->vm_id, strlen(cfg->vm_id) + 1);
    v->mode = cfg->mode;
    v->ready_ms = cfg->ready_ms ? cfg->ready_ms : READY_DEFAULT_MS;
    if (cfg->state_key != NULL) {
        memcpy(v->key, cfg->state_key, sizeof(v->key));
        v->has_key = true;
    }
    *out = v;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

static int remove_tree(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
        LOG_ERROR("cannot remove %s: %s", dir, strerror(errno));
        return TC_ERR_IO;
    }
    return 0;
}

int tc_vtpm_ek_pubkey(const uint8_t *tpm2b_public, size_t len, EVP_PKEY **out)
{
    return tc_certify_public_key(tpm2b_public, len, out);
}

/* The certificate must certify exactly this EK: a CA plugged in through the callback that
 * returns someone else's certificate must not end up in the vTPM. */
static int cert_matches_ek(const uint8_t *der, size_t len, const struct tc_tpm_key *ek)
{
    const uint8_t *p = der;
    EVP_PKEY *ekkey = NULL;
    int rc;
    X509 *cert = d2i_X509(NULL, &p, (long)len);
    if (cert == NULL || p != der + len) {
        LOG_ERROR("the EK certificate is not one DER certificate");
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if ((rc = tc_vtpm_ek_pubkey(ek->pub, ek->pub_len, &ekkey)) != 0)
        goto out;
    EVP_PKEY *certkey = X509_get0_pubkey(cert);
    if (certkey == NULL || EVP_PKEY_eq(certkey, ekkey) != 1) {
        LOG_ERROR("the EK certificate's public key is not the vTPM's EK");
        rc = TC_ERR_MISMATCH;
        goto out;
    }
out:
    EVP_PKEY_free(ekkey);
    X509_free(cert);
    return rc;
}

/* EK create, certificate (given, or from the callback), checks, NV and persistent handle. */
static int provision(struct tc_vtpm *v, const uint8_t *der_in, size_t len_in,
                     tc_vtpm_issue_fn issue, void *issue_arg)
{
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek;
    uint8_t *issued = NULL;
    size_t issued_len = 0;
    int rc;

    memset(&ek, 0, sizeof(ek));
    if (v->mode != TC_VTPM_TCP || v->pid <= 0 || v->tcti[0] == '\0') {
        LOG_ERROR("vTPM %s: provisioning needs a running TCP-mode instance", v->id);
        return TC_ERR_INVALID_ARG;
    }
    if ((rc = tc_tpm_open(v->tcti, &tpm)) != 0)
        goto out;
    if ((rc = tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek)) != 0)
        goto out;
    if (issue != NULL) {
        if ((rc = issue(issue_arg, v->id, ek.pub, ek.pub_len, &issued, &issued_len)) != 0) {
            LOG_ERROR("vTPM %s: issuing the EK certificate failed: %s", v->id, tc_strerror(rc));
            goto out;
        }
        if (issued == NULL) {
            rc = TC_ERR_INTERNAL;
            goto out;
        }
        der_in = issued;
        len_in = issued_len;
    }
    if (der_in == NULL || len_in == 0 || len_in > TC_TPM_EK_CERT_MAX) {
        rc = TC_ERR_INVALID_ARG;
        goto out;
    }
    if ((rc = cert_matches_ek(der_in, len_in, &ek)) != 0)
        goto out;
    if ((rc = tc_tpm_key_persist(tpm, &ek, TC_TPM_EK_HANDLE_ECC)) != 0)
        goto out;
    if ((rc = tc_tpm_ek_cert_write(tpm, TC_KEY_ECC_P256, der_in, len_in)) != 0)
        goto out;
    memcpy(v->ek_pub, ek.pub, ek.pub_len);
    v->ek_pub_len = ek.pub_len;
out:
    tc_tpm_key_release(tpm, &ek);
    tc_tpm_close(tpm);
    free(issued);
    return rc;
}

int tc_vtpm_create(const struct tc_vtpm_config *cfg, struct tc_vtpm **out)
{
    struct tc_vtpm *v = NULL;
    char state[PATH_MAX];
    bool made = false;
    int rc;

    if ((rc = handle_new(cfg, out)) != 0)
        return rc;
    v = *out;
    *out = NULL;
    if (mkdir(v->dir, 0700) != 0) {
        LOG_ERROR("vTPM %s: cannot create %s: %s", v->id, v->dir, strerror(errno));
        rc = errno == EEXIST ? TC_ERR_INVALID_ARG : TC_ERR_IO;
        goto out;
    }
    made = true;
    if ((rc = path_join(state, sizeof(state), v->dir, "state")) != 0)
        goto out;
    if (mkdir(state, 0700) != 0) {
        rc = TC_ERR_IO;
        goto out;
    }
    /* Provisioning needs the TPM port: a QEMU-mode vTPM is provisioned by a short TCP-mode run
     * on the same state first (QEMU only ever talks to the control socket). */
    if (cfg->issue_ek_cert != NULL) {
        v->mode = TC_VTPM_TCP;
        rc = tc_vtpm_start(v);
        if (rc == 0)
            rc = provision(v, NULL, 0, cfg->issue_ek_cert, cfg->issue_arg);
        if (cfg->mode == TC_VTPM_QEMU) {
            tc_vtpm_stop(v);
            v->mode = TC_VTPM_QEMU;
            if (rc == 0)
                rc = tc_vtpm_start(v);
        }
    } else {
        rc = tc_vtpm_start(v);
    }
    if (rc != 0)
        goto out;
    *out = v;
    v = NULL;
out:
    if (v != NULL) {
        tc_vtpm_stop(v);
        if (made)
            remove_tree(v->dir);
        tc_vtpm_free(v);
    }
    return rc;
}

int tc_vtpm_open(const struct tc_vtpm_config *cfg, struct tc_vtpm **out)
{
    struct stat st;
    char state[PATH_MAX];
    struct tc_vtpm *v;
    int rc;

    if ((rc = handle_new(cfg, &v)) != 0)
        return rc;
    if ((rc = path_join(state, sizeof(state), v->dir, "state")) != 0 || lstat(state, &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
        tc_vtpm_free(v);
        return rc ? rc : TC_ERR_NOT_FOUND;
    }
    v->pid = read_pid_file(v->dir);
    if (v->pid > 0 && v->mode == TC_VTPM_TCP && (v->port = read_port_file(v->dir)) != 0)
        snprintf(v->tcti, sizeof(v->tcti), "swtpm:host=127.0.0.1,port=%u", (unsigned)v->port);
    *out = v;
    return 0;
}

int tc_vtpm_start(struct tc_vtpm *v)
{
    int rc;
    if (v == NULL)
        return TC_ERR_INVALID_ARG;
    if (tc_vtpm_running(v)) {
        LOG_ERROR("vTPM %s is already running (pid %d)", v->id, (int)v->pid);
        return TC_ERR_INVALID_ARG;
    }
    if ((rc = spawn(v)) != 0)
        return rc;
    if (v->mode == TC_VTPM_TCP)
        write_port_file(v);
    LOG_DEBUG("vTPM %s running, pid %d", v->id, (int)v->pid);
    return 0;
}

int tc_vtpm_stop(struct tc_vtpm *v)
{
    char path[PATH_MAX];
    if (v == NULL)
        return TC_ERR_INVALID_ARG;
    if (v->pid > 0 && (v->child || swtpm_alive(v->pid))) {
        kill(v->pid, SIGTERM);
        reap(v);
    }
    v->pid = 0;
    v->child = false;
    v->port = 0;
    v->tcti[0] = '\0';
    if (path_join(path, sizeof(path), v->dir, "swtpm.pid") == 0)
        unlink(path);
    if (path_join(path, sizeof(path), v->dir, "swtpm.port") == 0)
        unlink(path);
    if (v->mode == TC_VTPM_QEMU)
        unlink(v->ctrl_path);
    return 0;
}

int tc_vtpm_delete(struct tc_vtpm *v)
{
    if (v == NULL)
        return TC_ERR_INVALID_ARG;
    tc_vtpm_stop(v);
    int rc = remove_tree(v->dir);
    tc_vtpm_free(v);
    return rc;
}

int tc_vtpm_purge(const struct tc_vtpm_config *cfg)
{
    struct tc_vtpm *v = NULL;
    struct stat st;
    int rc;

    if ((rc = handle_new(cfg, &v)) != 0)
        return rc;
    if (lstat(v->dir, &st) != 0 && errno == ENOENT) {
        tc_vtpm_free(v);
        return 0;
    }
    /* Not our child: tc_vtpm_stop signals it and waits until it is gone. */
    if ((v->pid = read_pid_file(v->dir)) > 0)
        LOG_WARN("vTPM %s: stopping its swtpm (pid %d) left running", v->id, (int)v->pid);
    tc_vtpm_stop(v);
    rc = remove_tree(v->dir);
    tc_vtpm_free(v);
    return rc;
}

void tc_vtpm_free(struct tc_vtpm *v)
{
    if (v == NULL)
        return;
    OPENSSL_cleanse(v->key, sizeof(v->key));
    free(v);
}

int tc_vtpm_provision(struct tc_vtpm *v, const uint8_t *ek_cert_der, size_t len)
{
    if (v == NULL || ek_cert_der == NULL || len == 0 || len > TC_TPM_EK_CERT_MAX)
        return TC_ERR_INVALID_ARG;
    return provision(v, ek_cert_der, len, NULL, NULL);
}

bool tc_vtpm_running(const struct tc_vtpm *v)
{
    /* A zombie child counts as stopped; tc_vtpm_stop reaps it. */
    return v != NULL && v->pid > 0 && swtpm_alive(v->pid);
}

pid_t tc_vtpm_pid(const struct tc_vtpm *v)
{
    return tc_vtpm_running(v) ? v->pid : 0;
}

const char *tc_vtpm_id(const struct tc_vtpm *v)
{
    return v ? v->id : NULL;
}

const char *tc_vtpm_dir(const struct tc_vtpm *v)
{
    return v ? v->dir : NULL;
}

const char *tc_vtpm_tcti(const struct tc_vtpm *v)
{
    return (v && v->mode == TC_VTPM_TCP && v->pid > 0 && v->tcti[0]) ? v->tcti : NULL;
}

uint16_t tc_vtpm_port(const struct tc_vtpm *v)
{
    return (v && v->mode == TC_VTPM_TCP && v->pid > 0) ? v->port : 0;
}

const char *tc_vtpm_ctrl_path(const struct tc_vtpm *v)
{
    return (v && v->mode == TC_VTPM_QEMU) ? v->ctrl_path : NULL;
}

int tc_vtpm_ek_public(const struct tc_vtpm *v, const uint8_t **pub, size_t *len)
{
    *pub = NULL;
    *len = 0;
    if (v == NULL)
        return TC_ERR_INVALID_ARG;
    if (v->ek_pub_len == 0)
        return TC_ERR_NOT_FOUND;
    *pub = v->ek_pub;
    *len = v->ek_pub_len;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tc_vtpm_entry *)a)->id, ((const struct tc_vtpm_entry *)b)->id);
}

int tc_vtpm_list(const char *base_dir, struct tc_vtpm_entry **out, size_t *n)
{
    struct tc_vtpm_entry *list = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    DIR *d;

    *out = NULL;
    *n = 0;
    if (base_dir == NULL)
        return TC_ERR_INVALID_ARG;
    if ((d = opendir(base_dir)) == NULL)
        return TC_ERR_IO;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char dir[PATH_MAX], state[PATH_MAX];
        struct stat st;
        if (!tc_vtpm_id_valid(de->d_name) ||
            path_join(dir, sizeof(dir), base_dir, de->d_name) != 0 ||
            path_join(state, sizeof(state), dir, "state") != 0 || lstat(state, &st) != 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (cnt == TC_VTPM_MAX_LIST) {
            rc = TC_ERR_TOO_LARGE;
            goto out;
        }
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct tc_vtpm_entry *nl = realloc(list, ncap * sizeof(*nl));
            if (nl == NULL) {
                rc = TC_ERR_ALLOC;
                goto out;
            }
            list = nl;
            cap = ncap;
        }
        memset(&list[cnt], 0, sizeof(list[cnt]));
        memcpy(list[cnt].id, de->d_name, strlen(de->d_name) + 1);
        list[cnt].pid = read_pid_file(dir);
        cnt++;
    }
    if (cnt > 1)
        qsort(list, cnt, sizeof(*list), entry_cmp);
    *out = cnt ? list : NULL;
    *n = cnt;
    if (cnt == 0)
        free(list);
    list = NULL;
out:
    closedir(d);
    free(list);
    return rc;
}
