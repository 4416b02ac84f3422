/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM's guest definition (docs/protocol.md, "Virtual machines", "Guest definition"): what the
 * host agent gives libvirt to boot the guest. It travels as the "guest" member of POST /v1/vms,
 * from the CLI through the coordinator to the agent, and both daemons parse it with
 * tc_vm_guest_from_json, which is strict: known members only, each of the right type and within
 * bounds; either a kernel (with an optional initrd and cmdline) or a disk image, never both.
 * Paths are the host's: absolute, printable ASCII without "//", "/./" or "/../" components.
 * The agent alone checks that they exist (they are files on its host).
 *
 * Errors: TC_ERR_FORMAT with why->check "request.guest" and a detail naming the member.
 */
#ifndef TRUSTCLOUD_VM_GUEST_H
#define TRUSTCLOUD_VM_GUEST_H

#include <jansson.h>
#include <stdbool.h>

#include "trustcloud/reason.h"

#define TC_VM_GUEST_PATH_MAX 1024
#define TC_VM_GUEST_CMDLINE_MAX 1024
#define TC_VM_GUEST_MEMORY_MIN 64 /* MiB */
#define TC_VM_GUEST_MEMORY_MAX 65536
#define TC_VM_GUEST_MEMORY_DEFAULT 256
#define TC_VM_GUEST_VCPUS_MAX 64

enum tc_vm_firmware { TC_VM_FW_SEABIOS = 0, TC_VM_FW_OVMF = 1 };

struct tc_vm_guest {
    char kernel[TC_VM_GUEST_PATH_MAX + 1]; /* "" when the guest boots from disk */
    char initrd[TC_VM_GUEST_PATH_MAX + 1]; /* "" when none */
    char cmdline[TC_VM_GUEST_CMDLINE_MAX + 1];
    char disk[TC_VM_GUEST_PATH_MAX + 1]; /* "" when the guest boots a kernel */
    enum tc_vm_firmware firmware;
    unsigned memory_mb; /* TC_VM_GUEST_MEMORY_MIN..MAX */
    unsigned vcpus;     /* 1..TC_VM_GUEST_VCPUS_MAX */
};

/* Parses o ({"kernel","initrd","cmdline","disk","firmware","memory_mb","vcpus"}) into g, with
 * defaults for what is absent (seabios, TC_VM_GUEST_MEMORY_DEFAULT, 1 vCPU). */
int tc_vm_guest_from_json(const json_t *o, struct tc_vm_guest *g, struct tc_reason *why);
/* The same object back (only the members that are set); NULL when out of memory. */
json_t *tc_vm_guest_to_json(const struct tc_vm_guest *g);
/* "seabios" or "ovmf". */
const char *tc_vm_firmware_name(enum tc_vm_firmware f);
/* A path as tc_vm_guest_from_json accepts it. */
bool tc_vm_guest_path_ok(const char *p, size_t len);

#endif
