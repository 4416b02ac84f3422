/* SPDX-License-Identifier: Apache-2.0 */
/* Opening a TPM, its identity (GetCapability) and the TSS2_RC -> TC_ERR_* boundary. */
#define LOGMODULE "tpm"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "tpm_internal.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

int tc_tpm_rc(TSS2_RC rc, const char *what)
{
    LOG_ERROR("%s: 0x%08x %s", what, rc, Tss2_RC_Decode(rc));
    return TC_ERR_TPM;
}

void tc_tpm_track(struct tc_tpm *tpm, ESYS_TR handle)
{
    for (size_t i = 0; i < TC_TPM_MAX_TRACKED; i++)
        if (tpm->tracked[i] == ESYS_TR_NONE) {
            tpm->tracked[i] = handle;
            return;
        }
    /* Only reachable when a caller holds more keys than any TPM can load. */
    LOG_WARN("more than %d keys held: handle 0x%x not flushed on close", TC_TPM_MAX_TRACKED,
             handle);
}

void tc_tpm_untrack(struct tc_tpm *tpm, ESYS_TR handle)
{
    for (size_t i = 0; i < TC_TPM_MAX_TRACKED; i++)
        if (tpm->tracked[i] == handle)
            tpm->tracked[i] = ESYS_TR_NONE;
}

/* startup: issue Startup(CLEAR) (already started is fine). */
static int tpm_open(const char *tcti, bool startup, struct tc_tpm **out)
{
    int rc = 0;
    TSS2_RC r;
    struct tc_tpm *tpm = NULL;

    *out = NULL;
    if ((tpm = calloc(1, sizeof(*tpm))) == NULL)
        return TC_ERR_ALLOC;
    for (size_t i = 0; i < TC_TPM_MAX_TRACKED; i++)
        tpm->tracked[i] = ESYS_TR_NONE;
    tpm->without_rm = tc_tpm_tcti_without_rm(tcti);
    if ((r = Tss2_TctiLdr_Initialize(tcti, &tpm->tcti)) != TSS2_RC_SUCCESS) {
        LOG_ERROR("cannot open TCTI '%s'", tcti ? tcti : "(default)");
        rc = tc_tpm_rc(r, "Tss2_TctiLdr_Initialize");
        goto out;
    }
    if ((r = Esys_Initialize(&tpm->esys, tpm->tcti, NULL)) != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_Initialize");
        goto out;
    }
    r = startup ? Esys_Startup(tpm->esys, TPM2_SU_CLEAR) : TSS2_RC_SUCCESS;
    /* A TPM that is already running (firmware or swtpm's startup-clear did it) says so. */
    if (r != TSS2_RC_SUCCESS && r != TPM2_RC_INITIALIZE) {
        rc = tc_tpm_rc(r, "Esys_Startup");
        goto out;
    }
    *out = tpm;
    tpm = NULL;
out:
    tc_tpm_close(tpm);
    return rc;
}

int tc_tpm_open(const char *tcti, struct tc_tpm **out)
{
    return tpm_open(tcti, true, out);
}

int tc_tpm_open_started(const char *tcti, struct tc_tpm **out)
{
    return tpm_open(tcti, false, out);
}

void tc_tpm_close(struct tc_tpm *tpm)
{
    if (tpm == NULL)
        return;
    if (tpm->esys != NULL) {
        for (size_t i = 0; i < TC_TPM_MAX_TRACKED; i++)
            if (tpm->tracked[i] != ESYS_TR_NONE) {
                TSS2_RC r = Esys_FlushContext(tpm->esys, tpm->tracked[i]);
                if (r != TSS2_RC_SUCCESS)
                    tc_tpm_rc(r, "Esys_FlushContext on close");
            }
        Esys_Finalize(&tpm->esys);
    }
    Tss2_TctiLdr_Finalize(&tpm->tcti);
    free(tpm);
}

/* Fetches all TPM properties from first on, following moreData. */
static int get_properties(struct tc_tpm *tpm, uint32_t first, TPML_TAGGED_TPM_PROPERTY *props)
{
    memset(props, 0, sizeof(*props));
    uint32_t next = first;
    for (;;) {
        TPMI_YES_NO more = TPM2_NO;
        TPMS_CAPABILITY_DATA *cap = NULL;
        TSS2_RC r =
            Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                               TPM2_CAP_TPM_PROPERTIES, next, TPM2_MAX_TPM_PROPERTIES, &more, &cap);
        if (r != TSS2_RC_SUCCESS)
            return tc_tpm_rc(r, "Esys_GetCapability(properties)");
        const TPML_TAGGED_TPM_PROPERTY *got = &cap->data.tpmProperties;
        uint32_t n = got->count;
        if (cap->capability != TPM2_CAP_TPM_PROPERTIES || n > TPM2_MAX_TPM_PROPERTIES) {
            Esys_Free(cap);
            return TC_ERR_TPM;
        }
        for (uint32_t i = 0; i < n && props->count < TPM2_MAX_TPM_PROPERTIES; i++)
            props->tpmProperty[props->count++] = got->tpmProperty[i];
        /* A TPM that claims more without progress would loop forever. */
        bool progress = n > 0 && got->tpmProperty[n - 1].property >= next;
        if (progress)
            next = got->tpmProperty[n - 1].property + 1;
        Esys_Free(cap);
        if (more != TPM2_YES || !progress || props->count == TPM2_MAX_TPM_PROPERTIES ||
            next >= TPM2_PT_VAR)
            return 0;
    }
}

static bool prop_get(const TPML_TAGGED_TPM_PROPERTY *props, uint32_t tag, uint32_t *v)
{
    for (uint32_t i = 0; i < props->count; i++)
        if (props->tpmProperty[i].property == tag) {
            *v = props->tpmProperty[i].value;
            return true;
        }
    return false;
}

/* Appends the printable characters of a 4-character property (big-endian) to s. */
static void prop_chars(uint32_t v, char *s, size_t cap)
{
    size_t len = strlen(s);
    for (int shift = 24; shift >= 0 && len + 1 < cap; shift -= 8) {
        char c = (char)((v >> shift) & 0xff);
        if (c >= 0x20 && c < 0x7f)
            s[len++] = c;
    }
    s[len] = 0;
}

int tc_tpm_active_banks(struct tc_tpm *tpm, struct tc_pcr_set *sel)
{
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA *cap = NULL;
    int rc = 0;

    tc_pcrs_init(sel);
    TSS2_RC r = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   TPM2_CAP_PCRS, 0, TPM2_NUM_PCR_BANKS, &more, &cap);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_GetCapability(pcrs)");
    const TPML_PCR_SELECTION *banks = &cap->data.assignedPCR;
    if (cap->capability != TPM2_CAP_PCRS || banks->count > TPM2_NUM_PCR_BANKS) {
        rc = TC_ERR_TPM;
        goto out;
    }
    for (uint32_t i = 0; i < banks->count; i++) {
        const TPMS_PCR_SELECTION *b = &banks->pcrSelections[i];
        uint32_t mask = 0;
        for (unsigned k = 0; k < b->sizeofSelect && k < 3; k++)
            mask |= (uint32_t)b->pcrSelect[k] << (8 * k);
        if (mask == 0)
            continue; /* allocated but inactive */
        const struct tc_hash_alg *alg = tc_hash_by_tpm(b->hash);
        if (alg == NULL) {
            LOG_WARN("active PCR bank with unknown hash 0x%04x ignored", b->hash);
            continue;
        }
        struct tc_pcr_bank *pb = tc_pcrs_bank(sel, alg, true);
        if (pb == NULL) {
            rc = TC_ERR_TOO_LARGE;
            goto out;
        }
        pb->mask = mask;
    }
out:
    Esys_Free(cap);
    if (rc != 0)
        tc_pcrs_init(sel);
    return rc;
}

int tc_tpm_info(struct tc_tpm *tpm, json_t **out)
{
    TPML_TAGGED_TPM_PROPERTY *props = NULL;
    struct tc_pcr_set banks;
    json_t *j = NULL, *jb = NULL;
    int rc = 0;
    uint32_t v;

    *out = NULL;
    if ((props = calloc(1, sizeof(*props))) == NULL)
        return TC_ERR_ALLOC;
    if ((rc = get_properties(tpm, TPM2_PT_FIXED, props)) != 0)
        goto out;
    if ((rc = tc_tpm_active_banks(tpm, &banks)) != 0)
        goto out;

    char manufacturer[8] = "", vendor[20] = "", family[8] = "", buf[64];
    if (prop_get(props, TPM2_PT_MANUFACTURER, &v))
        prop_chars(v, manufacturer, sizeof(manufacturer));
    for (uint32_t t = TPM2_PT_VENDOR_STRING_1; t <= TPM2_PT_VENDOR_STRING_4; t++)
        if (prop_get(props, t, &v))
            prop_chars(v, vendor, sizeof(vendor));
    if (prop_get(props, TPM2_PT_FAMILY_INDICATOR, &v))
        prop_chars(v, family, sizeof(family));

    if ((j = json_object()) == NULL || (jb = json_array()) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    json_object_set_new(j, "manufacturer", json_string(manufacturer));
    json_object_set_new(j, "vendor", json_string(vendor));
    uint32_t fw1 = 0, fw2 = 0;
    prop_get(props, TPM2_PT_FIRMWARE_VERSION_1, &fw1);
    prop_get(props, TPM2_PT_FIRMWARE_VERSION_2, &fw2);
    /* How the 64 bits split into a version is vendor-specific: show them raw, as hex. */
    snprintf(buf, sizeof(buf), "%08x.%08x", fw1, fw2);
    json_object_set_new(j, "firmware", json_string(buf));
    uint32_t level = 0, revision = 0, year = 0, day = 0;
    prop_get(props, TPM2_PT_LEVEL, &level);
    prop_get(props, TPM2_PT_REVISION, &revision);
    prop_get(props, TPM2_PT_YEAR, &year);
    prop_get(props, TPM2_PT_DAY_OF_YEAR, &day);
    snprintf(buf, sizeof(buf), "%s rev %u.%02u level %u", family, revision / 100, revision % 100,
             level);
    json_object_set_new(j, "spec", json_string(buf));
    json_object_set_new(j, "spec_year", json_integer(year));
    json_object_set_new(j, "spec_day", json_integer(day));
    for (size_t i = 0; i < banks.nbanks; i++)
        json_array_append_new(jb, json_string(banks.bank[i].alg->name));
    json_object_set_new(j, "banks", jb);
    jb = NULL;
    *out = j;
    j = NULL;
out:
    json_decref(jb);
    json_decref(j);
    free(props);
    return rc;
}

static int count_handles(struct tc_tpm *tpm, uint32_t first, uint32_t last, size_t *n)
{
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA *cap = NULL;
    TSS2_RC r = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES, &more, &cap);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_GetCapability(handles)");
    *n = 0;
    for (uint32_t i = 0; i < cap->data.handles.count && i < TPM2_MAX_CAP_HANDLES; i++)
        if (cap->data.handles.handle[i] >= first && cap->data.handles.handle[i] <= last)
            (*n)++;
    Esys_Free(cap);
    return 0;
}

int tc_tpm_loaded_count(struct tc_tpm *tpm, size_t *objects, size_t *sessions)
{
    int rc;
    *objects = *sessions = 0;
    /* Spelled out: tss2's TPM2_TRANSIENT_FIRST shifts a promoted int into the sign bit. */
    if ((rc = count_handles(tpm, 0x80000000u, 0x80fffffeu, objects)) != 0)
        return rc;
    /* TPM2_HT_LOADED_SESSION lists every loaded session, HMAC and policy alike; a policy
     * session's handle is in the 0x03 range. */
    return count_handles(tpm, TPM2_LOADED_SESSION_FIRST, TPM2_POLICY_SESSION_LAST, sessions);
}

bool tc_tpm_tcti_without_rm(const char *tcti)
{
    if (tcti == NULL)
        return false;
    const char *colon = strchr(tcti, ':');
    size_t n = colon ? (size_t)(colon - tcti) : strlen(tcti);
    const char *conf = colon ? colon + 1 : "";
    char name[32];
    if (n == 0 || n >= sizeof(name))
        return false;
    memcpy(name, tcti, n);
    name[n] = 0;
    /* "libtss2-tcti-device.so.0" names the same module as "device". */
    const char *m = name;
    if (strncmp(m, "libtss2-tcti-", 13) == 0)
        m += 13;
    else if (strncmp(m, "tcti-", 5) == 0)
        m += 5;
    size_t mlen = strcspn(m, ".");
    if (m[mlen] != 0 && strcmp(m + mlen, ".so") != 0 && strncmp(m + mlen, ".so.", 4) != 0)
        return false;
    if ((mlen == 5 && strncmp(m, "swtpm", 5) == 0) || (mlen == 5 && strncmp(m, "mssim", 5) == 0))
        return true;
    if (mlen != 6 || strncmp(m, "device", 6) != 0)
        return false;
    /* The device TCTI's default is /dev/tpm0; /dev/tpmrmN is the kernel's resource manager. */
    if (conf[0] == 0)
        return true;
    if (strncmp(conf, "/dev/tpm", 8) != 0 || conf[8] == 0)
        return false;
    for (const char *c = conf + 8; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    return true;
}

/* Whether this handle holds handle (a key handed out in struct tc_tpm_key). */
static bool held(struct tc_tpm *tpm, TPM2_HANDLE handle)
{
    for (size_t i = 0; i < TC_TPM_MAX_TRACKED; i++) {
        TPM2_HANDLE h = 0;
        if (tpm->tracked[i] != ESYS_TR_NONE &&
            Esys_TR_GetTpmHandle(tpm->esys, tpm->tracked[i], &h) == TSS2_RC_SUCCESS && h == handle)
            return true;
    }
    return false;
}

#define FLUSH_MAX 64 /* far above what any TPM holds (3 objects, 3 sessions on swtpm) */

/* Appends the handles in [first, last] the TPM lists, following moreData, to list. */
static int list_handles(struct tc_tpm *tpm, uint32_t first, uint32_t last, TPM2_HANDLE *list,
                        size_t *n)
{
    uint32_t next = first;
    for (;;) {
        TPMI_YES_NO more = TPM2_NO;
        TPMS_CAPABILITY_DATA *cap = NULL;
        TSS2_RC r = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       TPM2_CAP_HANDLES, next, TPM2_MAX_CAP_HANDLES, &more, &cap);
        if (r != TSS2_RC_SUCCESS)
            return tc_tpm_rc(r, "Esys_GetCapability(handles)");
        const TPML_HANDLE *h = &cap->data.handles;
        uint32_t cnt = h->count < TPM2_MAX_CAP_HANDLES ? h->count : TPM2_MAX_CAP_HANDLES;
        bool progress = false;
        for (uint32_t i = 0; i < cnt; i++) {
            if (h->handle[i] < next || h->handle[i] > last)
                continue;
            if (*n < FLUSH_MAX)
                list[(*n)++] = h->handle[i];
            progress = true;
            next = h->handle[i] + 1;
        }
        Esys_Free(cap);
        /* A TPM that claims more without progress would loop forever. */
        if (more != TPM2_YES || !progress || *n == FLUSH_MAX || next > last)
            return 0;
    }
}

int tc_tpm_flush_leftovers(struct tc_tpm *tpm, size_t *flushed)
{
    TPM2_HANDLE list[FLUSH_MAX];
    size_t n = 0, done = 0;
    char text[FLUSH_MAX * 11 + 1];
    size_t tlen = 0;
    int rc;

    if (flushed != NULL)
        *flushed = 0;
    if (tpm == NULL)
        return TC_ERR_INVALID_ARG;
    if (!tpm->without_rm) {
        LOG_DEBUG("a resource manager serves this TPM: nothing to flush");
        return 0;
    }
    /* Spelled out: tss2's TPM2_TRANSIENT_FIRST shifts a promoted int into the sign bit. */
    if ((rc = list_handles(tpm, 0x80000000u, 0x80fffffeu, list, &n)) != 0 ||
        (rc = list_handles(tpm, TPM2_LOADED_SESSION_FIRST, TPM2_POLICY_SESSION_LAST, list, &n)) !=
            0)
        return rc;
    text[0] = 0;
    for (size_t i = 0; i < n; i++) {
        ESYS_TR tr = ESYS_TR_NONE;
        if (held(tpm, list[i]))
            continue;
        /* ESAPI flushes by ESYS_TR: make one for the TPM handle (a ReadPublic for an object,
         * nothing sent for a session). */
        TSS2_RC r = Esys_TR_FromTPMPublic(tpm->esys, list[i], ESYS_TR_NONE, ESYS_TR_NONE,
                                          ESYS_TR_NONE, &tr);
        if (r == TSS2_RC_SUCCESS) {
            r = Esys_FlushContext(tpm->esys, tr);
            if (r != TSS2_RC_SUCCESS)
                Esys_TR_Close(tpm->esys, &tr);
        }
        if (r != TSS2_RC_SUCCESS) {
            LOG_ERROR("cannot flush the leftover handle 0x%08x", list[i]);
            rc = tc_tpm_rc(r, "Esys_FlushContext(leftover)");
            continue;
        }
        done++;
        int w = snprintf(text + tlen, sizeof(text) - tlen, " 0x%08x", list[i]);
        if (w > 0 && (size_t)w < sizeof(text) - tlen)
            tlen += (size_t)w;
    }
    if (done > 0)
        LOG_WARN("flushed %zu leftover handle(s) from the TPM (a process died while using "
                 "it):%s",
                 done, text);
    if (flushed != NULL)
        *flushed = done;
    return rc;
}
