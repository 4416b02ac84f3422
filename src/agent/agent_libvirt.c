/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libvirt domains of VMs with a guest definition (docs/protocol.md, "Virtual machines",
 * "Guest definition"). The agent reaches the hypervisor through libvirt's C API only: one
 * connection to cfg->libvirt_uri per call (opened and closed there, like the host TPM), so a
 * restarted libvirtd costs nothing but the calls that were in flight. The domain XML is written
 * with libxml2's xmlTextWriter, which escapes every value.
 *
 * Threading: called on the agent's TPM worker thread only; libvirt's last error is per thread.
 */
#define LOGMODULE "agent"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/xmlwriter.h>

#include "agent.h"
#include "trustcloud/error.h"
#include "trustcloud/guest_channel.h"
#include "trustcloud/log.h"
#include "trustcloud/vm_guest.h"

static void quiet(void *arg, virErrorPtr err)
{
    (void)arg;
    (void)err; /* reported through tc_reason by the caller, not on stderr */
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void lv_init(void)
{
    if (virInitialize() != 0)
        LOG_ERROR("libvirt: virInitialize failed");
    virSetErrorFunc(NULL, quiet);
}

static const char *lv_error(void)
{
    const char *m = virGetLastErrorMessage();
    return m ? m : "unknown libvirt error";
}

static int lv_open(const struct agent_config *cfg, virConnectPtr *conn, struct tc_reason *why)
{
    pthread_once(&init_once, lv_init);
    *conn = virConnectOpen(cfg->libvirt_uri);
    if (*conn == NULL)
        return tc_fail(why, TC_ERR_IO, "vm.libvirt", -1, "cannot connect to libvirt at %s: %s",
                       cfg->libvirt_uri, lv_error());
    return 0;
}

/* The domain of uuid; TC_ERR_NOT_FOUND when libvirt does not know it. */
static int lv_domain(virConnectPtr conn, const char *uuid, virDomainPtr *dom, struct tc_reason *why)
{
    *dom = virDomainLookupByUUIDString(conn, uuid);
    if (*dom != NULL)
        return 0;
    virErrorPtr e = virGetLastError();
    if (e != NULL && e->code == VIR_ERR_NO_DOMAIN)
        return tc_fail(why, TC_ERR_NOT_FOUND, "vm.domain", -1, "libvirt has no domain %s", uuid);
    return tc_fail(why, TC_ERR_IO, "vm.libvirt", -1, "cannot look up domain %s: %s", uuid,
                   lv_error());
}

/* A connection and the domain one operation works on (either may be NULL). */
struct lv_handle {
    virConnectPtr conn;
    virDomainPtr dom;
};

/* Connects and looks the domain of uuid up (TC_ERR_NOT_FOUND when libvirt does not know it).
 * Release h with lv_close in any case. */
static int lv_open_domain(const struct agent_config *cfg, const char *uuid, struct lv_handle *h,
                          struct tc_reason *why)
{
    int rc;
    h->conn = NULL;
    h->dom = NULL;
    if ((rc = lv_open(cfg, &h->conn, why)) != 0)
        return rc;
    return lv_domain(h->conn, uuid, &h->dom, why);
}

static void lv_close(struct lv_handle *h)
{
    if (h->dom != NULL)
        virDomainFree(h->dom);
    if (h->conn != NULL)
        virConnectClose(h->conn);
    h->dom = NULL;
    h->conn = NULL;
}

/* qcow2 images start with "QFI\xfb"; everything else is given to QEMU as raw. */
static const char *disk_format(const char *path)
{
    unsigned char magic[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, magic, sizeof(magic)) : -1;
    if (fd >= 0)
        close(fd);
    return n == 4 && memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
}

/* Element helpers: each returns < 0 on a writer failure, like libxml2's own calls. */
static int el_text(xmlTextWriterPtr w, const char *name, const char *text)
{
    return xmlTextWriterWriteElement(w, BAD_CAST name, BAD_CAST text);
}

static int attr(xmlTextWriterPtr w, const char *name, const char *value)
{
    return xmlTextWriterWriteAttribute(w, BAD_CAST name, BAD_CAST value);
}

static int open_el(xmlTextWriterPtr w, const char *name)
{
    return xmlTextWriterStartElement(w, BAD_CAST name);
}

static int close_el(xmlTextWriterPtr w)
{
    return xmlTextWriterEndElement(w);
}

static int write_domain(xmlTextWriterPtr w, const struct agent_domain_def *d)
{
    const struct tc_vm_guest *g = d->guest;
    char num[24];
    bool ovmf = g->firmware == TC_VM_FW_OVMF;

    if (xmlTextWriterSetIndent(w, 1) < 0 || xmlTextWriterStartDocument(w, NULL, NULL, NULL) < 0 ||
        open_el(w, "domain") < 0 || attr(w, "type", "qemu") < 0 || el_text(w, "name", d->name) < 0)
        return -1;
    if (d->uuid != NULL && d->uuid[0] != 0 && el_text(w, "uuid", d->uuid) < 0)
        return -1;
    snprintf(num, sizeof(num), "%u", g->memory_mb);
    if (open_el(w, "memory") < 0 || attr(w, "unit", "MiB") < 0 ||
        xmlTextWriterWriteString(w, BAD_CAST num) < 0 || close_el(w) < 0)
        return -1;
    snprintf(num, sizeof(num), "%u", g->vcpus);
    if (el_text(w, "vcpu", num) < 0)
        return -1;
    /* OS: SeaBIOS is QEMU's default; OVMF is picked from the firmware descriptors of the host
     * (Debian's ovmf package installs them), without secure boot. */
    if (open_el(w, "os") < 0 || (ovmf && attr(w, "firmware", "efi") < 0) ||
        open_el(w, "type") < 0 || attr(w, "arch", "x86_64") < 0 ||
        attr(w, "machine", ovmf ? "q35" : "pc") < 0 ||
        xmlTextWriterWriteString(w, BAD_CAST "hvm") < 0 || close_el(w) < 0)
        return -1;
    if (ovmf &&
        (open_el(w, "firmware") < 0 || open_el(w, "feature") < 0 || attr(w, "enabled", "no") < 0 ||
         attr(w, "name", "secure-boot") < 0 || close_el(w) < 0 || close_el(w) < 0))
        return -1;
    if (g->kernel[0] != 0) {
        if (el_text(w, "kernel", g->kernel) < 0 ||
            (g->initrd[0] != 0 && el_text(w, "initrd", g->initrd) < 0) ||
            (g->cmdline[0] != 0 && el_text(w, "cmdline", g->cmdline) < 0))
            return -1;
    } else if (open_el(w, "boot") < 0 || attr(w, "dev", "hd") < 0 || close_el(w) < 0) {
        return -1;
    }
    if (close_el(w) < 0)
        return -1;
    /* Without ACPI the guest finds no TPM (the TPM TIS device is described in ACPI tables). */
    if (open_el(w, "features") < 0 || open_el(w, "acpi") < 0 || close_el(w) < 0 ||
        (ovmf && (open_el(w, "smm") < 0 || attr(w, "state", "off") < 0 || close_el(w) < 0)) ||
        close_el(w) < 0)
        return -1;
    if (el_text(w, "on_poweroff", "destroy") < 0 || el_text(w, "on_reboot", "restart") < 0 ||
        el_text(w, "on_crash", "destroy") < 0 || open_el(w, "devices") < 0)
        return -1;
    if (g->disk[0] != 0 &&
        (open_el(w, "disk") < 0 || attr(w, "type", "file") < 0 || attr(w, "device", "disk") < 0 ||
         open_el(w, "driver") < 0 || attr(w, "name", "qemu") < 0 ||
         attr(w, "type", disk_format(g->disk)) < 0 || close_el(w) < 0 || open_el(w, "source") < 0 ||
         attr(w, "file", g->disk) < 0 || close_el(w) < 0 || open_el(w, "target") < 0 ||
         attr(w, "dev", "vda") < 0 || attr(w, "bus", "virtio") < 0 || close_el(w) < 0 ||
         close_el(w) < 0))
        return -1;
    /* The serial console goes to a pty, logged by virtlogd into the VM directory. */
    if (open_el(w, "serial") < 0 || attr(w, "type", "pty") < 0 || open_el(w, "log") < 0 ||
        attr(w, "file", d->console_log) < 0 || attr(w, "append", "off") < 0 || close_el(w) < 0 ||
        open_el(w, "target") < 0 || attr(w, "port", "0") < 0 || close_el(w) < 0 || close_el(w) < 0)
        return -1;
    if (open_el(w, "console") < 0 || attr(w, "type", "pty") < 0 || open_el(w, "target") < 0 ||
        attr(w, "type", "serial") < 0 || attr(w, "port", "0") < 0 || close_el(w) < 0 ||
        close_el(w) < 0)
        return -1;
    /* The guest agent's virtio-serial port. */
    if (open_el(w, "channel") < 0 || attr(w, "type", "unix") < 0 || open_el(w, "source") < 0 ||
        attr(w, "mode", "bind") < 0 || attr(w, "path", d->channel_socket) < 0 || close_el(w) < 0 ||
        open_el(w, "target") < 0 || attr(w, "type", "virtio") < 0 ||
        attr(w, "name", TC_GC_PORT_NAME) < 0 || close_el(w) < 0 || close_el(w) < 0)
        return -1;
    /* The platform's vTPM: the swtpm the agent runs, reached on its control socket. */
    if (open_el(w, "tpm") < 0 || attr(w, "model", "tpm-tis") < 0 || open_el(w, "backend") < 0 ||
        attr(w, "type", "external") < 0 || open_el(w, "source") < 0 ||
        attr(w, "type", "unix") < 0 || attr(w, "mode", "connect") < 0 ||
        attr(w, "path", d->tpm_socket) < 0 || close_el(w) < 0 || close_el(w) < 0 || close_el(w) < 0)
        return -1;
    if (open_el(w, "memballoon") < 0 || attr(w, "model", "none") < 0 || close_el(w) < 0 ||
        close_el(w) < 0 /* devices */ || close_el(w) < 0 /* domain */ ||
        xmlTextWriterEndDocument(w) < 0)
        return -1;
    return 0;
}

int agent_libvirt_xml(const struct agent_domain_def *def, char **xml)
{
    *xml = NULL;
    xmlBufferPtr buf = xmlBufferCreate();
    xmlTextWriterPtr w = buf ? xmlNewTextWriterMemory(buf, 0) : NULL;
    int rc = TC_ERR_ALLOC;
    if (w != NULL && write_domain(w, def) == 0) {
        xmlFreeTextWriter(w); /* flushes into buf */
        w = NULL;
        if ((*xml = strdup((const char *)xmlBufferContent(buf))) != NULL)
            rc = 0;
    }
    if (w != NULL)
        xmlFreeTextWriter(w);
    if (buf != NULL)
        xmlBufferFree(buf);
    return rc;
}

int agent_libvirt_define(const struct agent_config *cfg, const struct agent_domain_def *def,
                         char uuid[AGENT_UUID_LEN + 1], struct tc_reason *why)
{
    struct lv_handle h = {NULL, NULL};
    char *xml = NULL;
    int rc;

    uuid[0] = 0;
    if ((rc = agent_libvirt_xml(def, &xml)) != 0) {
        tc_fail(why, rc, "vm.domain", -1, "cannot write the domain XML");
        goto out;
    }
    if ((rc = lv_open(cfg, &h.conn, why)) != 0)
        goto out;
    if ((h.dom = virDomainDefineXMLFlags(h.conn, xml, VIR_DOMAIN_DEFINE_VALIDATE)) == NULL) {
        rc = tc_fail(why, TC_ERR_INVALID_ARG, "vm.domain", -1, "libvirt refused the domain: %s",
                     lv_error());
        goto out;
    }
    char u[VIR_UUID_STRING_BUFLEN];
    if (virDomainGetUUIDString(h.dom, u) != 0 || strlen(u) != AGENT_UUID_LEN) {
        rc = tc_fail(why, TC_ERR_IO, "vm.domain", -1, "no UUID for domain %s", def->name);
        virDomainUndefine(h.dom);
        goto out;
    }
    memcpy(uuid, u, AGENT_UUID_LEN + 1);
    LOG_INFO("libvirt: defined domain %s (%s)", def->name, uuid);
out:
    lv_close(&h);
    free(xml);
    return rc;
}

int agent_libvirt_active(const struct agent_config *cfg, const char *uuid, bool *active,
                         struct tc_reason *why)
{
    struct lv_handle h;
    int rc;

    *active = false;
    if ((rc = lv_open_domain(cfg, uuid, &h, why)) != 0)
        goto out;
    int a = virDomainIsActive(h.dom);
    if (a < 0)
        rc = tc_fail(why, TC_ERR_IO, "vm.libvirt", -1, "domain %s: %s", uuid, lv_error());
    *active = a == 1;
out:
    lv_close(&h);
    return rc;
}

int agent_libvirt_start(const struct agent_config *cfg, const char *uuid, struct tc_reason *why)
{
    struct lv_handle h;
    int rc;

    if ((rc = lv_open_domain(cfg, uuid, &h, why)) != 0)
        goto out;
    if (virDomainIsActive(h.dom) == 1) {
        LOG_INFO("libvirt: domain %s is running already", uuid);
        goto out;
    }
    if (virDomainCreate(h.dom) != 0)
        rc = tc_fail(why, TC_ERR_IO, "vm.domain", -1, "libvirt cannot start the domain: %s",
                     lv_error());
out:
    lv_close(&h);
    return rc;
}

int agent_libvirt_shutdown(const struct agent_config *cfg, const char *uuid, bool destroy,
                           struct tc_reason *why)
{
    struct lv_handle h;
    int rc;

    if ((rc = lv_open_domain(cfg, uuid, &h, why)) != 0)
        goto out;
    if (virDomainIsActive(h.dom) != 1)
        goto out;
    int r = destroy ? virDomainDestroy(h.dom)
                    : virDomainShutdownFlags(h.dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
    if (r != 0 && virDomainIsActive(h.dom) == 1)
        rc = tc_fail(why, TC_ERR_IO, "vm.domain", -1, "libvirt cannot %s the domain: %s",
                     destroy ? "destroy" : "shut down", lv_error());
out:
    lv_close(&h);
    return rc;
}

int agent_libvirt_undefine(const struct agent_config *cfg, const char *uuid, struct tc_reason *why)
{
    struct lv_handle h;
    int rc;

    if ((rc = lv_open_domain(cfg, uuid, &h, why)) != 0) {
        if (rc == TC_ERR_NOT_FOUND)
            rc = 0; /* gone already */
        goto out;
    }
    if (virDomainIsActive(h.dom) == 1 && virDomainDestroy(h.dom) != 0) {
        rc = tc_fail(why, TC_ERR_IO, "vm.domain", -1, "libvirt cannot destroy the domain: %s",
                     lv_error());
        goto out;
    }
    if (virDomainUndefineFlags(h.dom, VIR_DOMAIN_UNDEFINE_NVRAM) != 0) {
        rc = tc_fail(why, TC_ERR_IO, "vm.domain", -1, "libvirt cannot undefine the domain: %s",
                     lv_error());
        goto out;
    }
    LOG_INFO("libvirt: undefined domain %s", uuid);
out:
    lv_close(&h);
    return rc;
}
