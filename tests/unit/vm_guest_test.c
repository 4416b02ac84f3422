/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest definition (trustcloud/vm_guest.h): what the coordinator and the agent accept and
 * refuse, and the libvirt domain XML the agent writes for it, parsed back with libxml2 to show
 * that hostile strings (quotes, angle brackets, ampersands in the command line) stay values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "trustcloud/error.h"
#include "trustcloud/vm_guest.h"

/* The agent is an executable, not a library: the module is compiled into the test. */
#include "agent/agent_libvirt.c"

static int parse(const char *text, struct tc_vm_guest *g, struct tc_reason *why)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &jerr);
    assert_non_null(j);
    tc_reason_clear(why);
    int rc = tc_vm_guest_from_json(j, g, why);
    json_decref(j);
    return rc;
}

static void accepted(void **state)
{
    (void)state;
    struct tc_vm_guest g;
    struct tc_reason why;
    assert_int_equal(parse("{\"kernel\": \"/boot/vmlinuz\", \"initrd\": \"/boot/initrd.img\", "
                           "\"cmdline\": \"console=ttyS0 quiet\"}",
                           &g, &why),
                     0);
    assert_string_equal(g.kernel, "/boot/vmlinuz");
    assert_int_equal(g.firmware, TC_VM_FW_SEABIOS);
    assert_int_equal(g.memory_mb, TC_VM_GUEST_MEMORY_DEFAULT);
    assert_int_equal(g.vcpus, 1);
    assert_int_equal(parse("{\"disk\": \"/var/lib/images/a.qcow2\", \"firmware\": \"ovmf\", "
                           "\"memory_mb\": 1024, \"vcpus\": 4}",
                           &g, &why),
                     0);
    assert_int_equal(g.firmware, TC_VM_FW_OVMF);
    assert_int_equal(g.memory_mb, 1024);
    assert_int_equal(g.vcpus, 4);
    /* Round trip. */
    json_t *back = tc_vm_guest_to_json(&g);
    struct tc_vm_guest g2;
    assert_non_null(back);
    assert_int_equal(tc_vm_guest_from_json(back, &g2, &why), 0);
    assert_memory_equal(&g, &g2, sizeof(g));
    json_decref(back);
}

static void refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]",
        "{}",                                                /* neither kernel nor disk */
        "{\"kernel\": \"/k\", \"disk\": \"/d\"}",            /* both */
        "{\"disk\": \"/d\", \"initrd\": \"/i\"}",            /* initrd without kernel */
        "{\"disk\": \"/d\", \"cmdline\": \"x\"}",            /* cmdline without kernel */
        "{\"kernel\": \"vmlinuz\"}",                         /* relative */
        "{\"kernel\": \"/boot/../etc/shadow\"}",             /* .. component */
        "{\"kernel\": \"/boot//vmlinuz\"}",                  /* empty component */
        "{\"kernel\": \"/boot/./vmlinuz\"}",                 /* . component */
        "{\"kernel\": \"/boot/\"}",                          /* trailing slash */
        "{\"kernel\": \"/boot/vm linuz\"}",                  /* space */
        "{\"kernel\": \"/boot/vm\\u0000linuz\"}",            /* NUL inside */
        "{\"kernel\": \"/k\", \"cmdline\": \"a\\nb\"}",      /* control character */
        "{\"kernel\": \"/k\", \"cmdline\": \"caf\\u00e9\"}", /* not ASCII */
        "{\"kernel\": 7}",                                   /* type */
        "{\"kernel\": \"/k\", \"firmware\": \"coreboot\"}",  /* enum */
        "{\"kernel\": \"/k\", \"firmware\": 1}",
        "{\"kernel\": \"/k\", \"memory_mb\": 63}", /* bounds */
        "{\"kernel\": \"/k\", \"memory_mb\": 65537}",
        "{\"kernel\": \"/k\", \"memory_mb\": 256.0}",
        "{\"kernel\": \"/k\", \"vcpus\": 0}",
        "{\"kernel\": \"/k\", \"vcpus\": 65}",
        "{\"kernel\": \"/k\", \"vcpus\": \"2\"}",
        "{\"kernel\": \"/k\", \"network\": \"default\"}", /* unknown member */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tc_vm_guest g;
        struct tc_reason why;
        if (parse(bad[i], &g, &why) != TC_ERR_FORMAT)
            fail_msg("accepted: %s", bad[i]);
        assert_string_equal(why.check, "request.guest");
        assert_string_equal(g.kernel, "");
    }
    /* Length bounds: TC_VM_GUEST_PATH_MAX bytes pass, one more does not. */
    char path[TC_VM_GUEST_PATH_MAX + 2];
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[TC_VM_GUEST_PATH_MAX] = 0;
    assert_true(tc_vm_guest_path_ok(path, TC_VM_GUEST_PATH_MAX));
    path[TC_VM_GUEST_PATH_MAX] = 'a';
    path[TC_VM_GUEST_PATH_MAX + 1] = 0;
    assert_false(tc_vm_guest_path_ok(path, TC_VM_GUEST_PATH_MAX + 1));
}

static char *xpath_str(xmlDocPtr doc, const char *expr)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathObjectPtr o = ctx ? xmlXPathEvalExpression(BAD_CAST expr, ctx) : NULL;
    char *s = o ? (char *)xmlXPathCastToString(o) : NULL;
    xmlXPathFreeObject(o);
    xmlXPathFreeContext(ctx);
    return s;
}

static void domain_xml(void **state)
{
    (void)state;
    struct tc_vm_guest g;
    struct tc_reason why;
    const char *hostile = "console=ttyS0 x='1' y=\"2\" <a>&amp;</a> ]]>";
    char json[512];
    snprintf(json, sizeof(json),
             "{\"kernel\": \"/boot/vmlinuz\", \"initrd\": \"/boot/initrd\", \"cmdline\": \"%s\", "
             "\"memory_mb\": 512, \"vcpus\": 2}",
             "console=ttyS0 x='1' y=\\\"2\\\" <a>&amp;</a> ]]>");
    assert_int_equal(parse(json, &g, &why), 0);
    assert_string_equal(g.cmdline, hostile);
    struct agent_domain_def d = {.name = "trustcloud-n1-vm1",
                                 .guest = &g,
                                 .tpm_socket = "/var/lib/vms/vm1/ctrl.sock",
                                 .channel_socket = "/var/lib/vms/vm1/channel/guest.sock",
                                 .console_log = "/var/lib/vms/vm1/console.log"};
    char *xml = NULL;
    assert_int_equal(agent_libvirt_xml(&d, &xml), 0);
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    static const struct {
        const char *xpath, *want;
    } checks[] = {
        {"string(/domain/@type)", "qemu"},
        {"string(/domain/name)", "trustcloud-n1-vm1"},
        {"string(/domain/memory)", "512"},
        {"string(/domain/memory/@unit)", "MiB"},
        {"string(/domain/vcpu)", "2"},
        {"string(/domain/os/kernel)", "/boot/vmlinuz"},
        {"string(/domain/os/initrd)", "/boot/initrd"},
        {"count(/domain/features/acpi)", "1"},
        {"count(/domain/devices/*)", "5"}, /* serial, console, channel, tpm, memballoon */
        {"string(/domain/devices/tpm/@model)", "tpm-tis"},
        {"string(/domain/devices/tpm/backend/@type)", "external"},
        {"string(/domain/devices/tpm/backend/source/@type)", "unix"},
        {"string(/domain/devices/tpm/backend/source/@mode)", "connect"},
        {"string(/domain/devices/tpm/backend/source/@path)", "/var/lib/vms/vm1/ctrl.sock"},
        {"string(/domain/devices/channel/@type)", "unix"},
        {"string(/domain/devices/channel/source/@mode)", "bind"},
        {"string(/domain/devices/channel/source/@path)", "/var/lib/vms/vm1/channel/guest.sock"},
        {"string(/domain/devices/channel/target/@type)", "virtio"},
        {"string(/domain/devices/channel/target/@name)", "org.trustcloud.guest.0"},
        {"string(/domain/devices/serial/log/@file)", "/var/lib/vms/vm1/console.log"},
        {"count(/domain/os/@firmware)", "0"},
    };
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        char *got = xpath_str(doc, checks[i].xpath);
        if (got == NULL || strcmp(got, checks[i].want) != 0)
            fail_msg("%s: '%s', expected '%s'\n%s", checks[i].xpath, got ? got : "(null)",
                     checks[i].want, xml);
        xmlFree(got);
    }
    /* The hostile command line is one text value, exactly as given. */
    char *cmd = xpath_str(doc, "string(/domain/os/cmdline)");
    assert_string_equal(cmd, hostile);
    xmlFree(cmd);
    xmlFreeDoc(doc);
    free(xml);

    /* OVMF and a disk. */
    assert_int_equal(parse("{\"disk\": \"/img/a.raw\", \"firmware\": \"ovmf\"}", &g, &why), 0);
    assert_int_equal(agent_libvirt_xml(&d, &xml), 0);
    doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    static const struct {
        const char *xpath, *want;
    } ovmf[] = {
        {"string(/domain/os/@firmware)", "efi"},
        {"string(/domain/os/firmware/feature[@name='secure-boot']/@enabled)", "no"},
        {"string(/domain/os/boot/@dev)", "hd"},
        {"count(/domain/os/kernel)", "0"},
        {"string(/domain/devices/disk/source/@file)", "/img/a.raw"},
        {"string(/domain/devices/disk/driver/@type)", "raw"},
        {"string(/domain/devices/disk/target/@bus)", "virtio"},
    };
    for (size_t i = 0; i < sizeof(ovmf) / sizeof(ovmf[0]); i++) {
        char *got = xpath_str(doc, ovmf[i].xpath);
        if (got == NULL || strcmp(got, ovmf[i].want) != 0)
            fail_msg("%s: '%s', expected '%s'\n%s", ovmf[i].xpath, got ? got : "(null)",
                     ovmf[i].want, xml);
        xmlFree(got);
    }
    xmlFreeDoc(doc);
    free(xml);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted),
        cmocka_unit_test(refused),
        cmocka_unit_test(domain_xml),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
