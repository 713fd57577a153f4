/* stage.c: the secondary's restricted checkpoint loaders and the all-or-nothing device load. */
#include "colo/stage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKUP_INITIAL_CAP (64u << 10)

/* The iterative sections a RAM segment may carry: both only stage what they receive. */
static bool ram_segment_entry(const struct stream_section *e)
{
    return e->iter && (!strcmp(e->idstr, "ram") || !strcmp(e->idstr, "disk"));
}

static size_t count_subsections(const struct vmstate_desc *d)
{
    size_t n = 0;

    while (d->subsections && d->subsections[n])
        n++;
    return n;
}

/*
 * bak_reg: dev_reg with each table replaced by a copy that sends every subsection (needed()
 * off) and runs no pre_save. A subsection that is not needed now is still state the incoming
 * buffer may overwrite; without it, a restore would leave the new value behind.
 */
static int build_shadow(struct colo_stage *st)
{
    size_t nsub = 0, next = 0;
    struct vmstate_desc *sd;

    for (size_t i = 0; i < st->ndev; i++)
        nsub += count_subsections(st->dev_reg[i].desc);
    /* + 1: never calloc(0), whose NULL would read as no memory */
    st->shadow = calloc(st->ndev + nsub + 1, sizeof(*st->shadow));
    st->shadow_subs = calloc(st->ndev + nsub + 1, sizeof(*st->shadow_subs));
    if (!st->shadow || !st->shadow_subs)
        return -ENOMEM;
    sd = st->shadow + st->ndev; /* the subsection copies follow the roots */
    for (size_t i = 0; i < st->ndev; i++) {
        const struct vmstate_desc *d = st->dev_reg[i].desc;
        size_t n = count_subsections(d);

        st->shadow[i] = *d;
        st->shadow[i].pre_save = NULL;
        st->shadow[i].needed = NULL;
        st->shadow[i].subsections = NULL;
        if (n) {
            st->shadow[i].subsections = &st->shadow_subs[next];
            for (size_t k = 0; k < n; k++) {
                *sd = *d->subsections[k];
                sd->needed = NULL;
                sd->pre_save = NULL;
                st->shadow_subs[next++] = sd++;
            }
            st->shadow_subs[next++] = NULL;
        }
        st->bak_reg[i] = st->dev_reg[i];
        st->bak_reg[i].desc = &st->shadow[i];
    }
    return 0;
}

int colo_stage_init(struct colo_stage *st, struct devstate *ds)
{
    int r;

    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < ds->nreg; i++) {
        const struct stream_section *e = &ds->reg[i];

        if (ram_segment_entry(e))
            st->ram_reg[st->nram++] = *e;
        else if (e->desc)
            st->dev_reg[st->ndev++] = *e;
        /* anything else ("disk-sync": the initial sync only) belongs in neither */
    }
    r = build_shadow(st);
    if (r)
        goto fail;
    r = stream_loader_init(&st->ram_ld, st->ram_reg, st->nram);
    if (r)
        goto fail;
    r = stream_loader_init(&st->dev_ld, st->dev_reg, st->ndev);
    if (r)
        goto fail_ram;
    r = stream_loader_init(&st->bak_ld, st->bak_reg, st->ndev);
    if (r)
        goto fail_dev;
    r = stream_writer_init_buf(&st->backup, BACKUP_INITIAL_CAP);
    if (r)
        goto fail_bak;
    /* No command handler anywhere: a command inside a checkpoint is refused (-EBADMSG). */
    return 0;

fail_bak:
    stream_loader_destroy(&st->bak_ld);
fail_dev:
    stream_loader_destroy(&st->dev_ld);
fail_ram:
    stream_loader_destroy(&st->ram_ld);
fail:
    free(st->shadow);
    free(st->shadow_subs);
    memset(st, 0, sizeof(*st));
    return r;
}

void colo_stage_destroy(struct colo_stage *st)
{
    stream_writer_destroy(&st->backup);
    stream_loader_destroy(&st->bak_ld);
    stream_loader_destroy(&st->dev_ld);
    stream_loader_destroy(&st->ram_ld);
    free(st->shadow);
    free(st->shadow_subs);
    memset(st, 0, sizeof(*st));
}

/*
 * A loader as new: the section ids a failed segment bound, and a section it left open, must
 * not outlive it. If the memory is not there, the loader is left empty (slots NULL, nreg 0),
 * which refuses every section: safe, and the checkpoint after it is rejected.
 */
static void renew_loader(struct stream_loader *ld, const struct stream_section *reg, size_t n)
{
    stream_loader_destroy(ld);
    if (stream_loader_init(ld, reg, n))
        memset(ld, 0, sizeof(*ld));
}

int colo_stage_load_ram(struct colo_stage *st, struct stream_reader *sr)
{
    int r = stream_load_segment(&st->ram_ld, sr);

    if (r)
        renew_loader(&st->ram_ld, st->ram_reg, st->nram);
    return r;
}

/* Every device section as it is now, one segment (ids: position in dev_reg + 1). */
static int backup_devices(struct colo_stage *st)
{
    sw_buf_reset(&st->backup);
    for (size_t i = 0; i < st->ndev; i++) {
        const struct stream_section *e = &st->bak_reg[i];

        if (stream_save_section(&st->backup, (uint32_t)(i + 1), e->idstr, e->instance_id, e->desc,
                                e->opaque))
            break;
    }
    return stream_put_eof(&st->backup);
}

/*
 * Loads buf, exactly one segment that holds every device section, through ld (a device
 * loader); 0, or the error with its message in err. A buffer without some device is not a
 * whole checkpoint: that device would stay behind while the others move on.
 */
static int load_whole(struct stream_loader *ld, const uint8_t *buf, size_t len, char *err,
                      size_t errlen)
{
    struct stream_reader mr;
    int r;

    stream_reader_init_buf(&mr, buf, len);
    r = stream_load_segment(ld, &mr);
    if (!r && sr_remaining(&mr))
        sr_fail(&mr, -EBADMSG, "%zu bytes after the segment's EOF", sr_remaining(&mr));
    for (size_t i = 0; !sr_error(&mr) && i < ld->nreg; i++)
        if (!stream_loader_seen(ld, i))
            sr_fail(&mr, -EBADMSG, "no section %s instance %u in the device state",
                    ld->reg[i].idstr, ld->reg[i].instance_id);
    r = sr_error(&mr);
    if (r)
        snprintf(err, errlen, "%s", sr_errmsg(&mr));
    stream_reader_destroy(&mr);
    return r;
}

int colo_stage_load_devices(struct colo_stage *st, const uint8_t *buf, size_t len, char *err,
                            size_t errlen)
{
    char why[STREAM_ERRMSG_LEN], rwhy[STREAM_ERRMSG_LEN];
    const uint8_t *bak;
    size_t baklen;
    int r, rr;

    r = backup_devices(st);
    if (r) {
        /* Nothing was loaded yet: the devices are untouched and the checkpoint is refused. */
        snprintf(err, errlen, "cannot save the current device state first (%s); nothing loaded",
                 sw_errmsg(&st->backup));
        return r;
    }
    r = load_whole(&st->dev_ld, buf, len, why, sizeof(why));
    if (!r) {
        if (errlen)
            err[0] = '\0';
        return 0;
    }
    renew_loader(&st->dev_ld, st->dev_reg, st->ndev); /* the bad buffer's bindings go too */

    /* The same loader code, on bytes we wrote a moment ago from these very structs. */
    bak = sw_buf_data(&st->backup, &baklen);
    rr = load_whole(&st->bak_ld, bak, baklen, rwhy, sizeof(rwhy));
    if (rr) {
        snprintf(err, errlen, "%s; restoring the previous device state failed too: %s", why, rwhy);
        return -ENOTRECOVERABLE;
    }
    snprintf(err, errlen, "%s (devices restored to the last checkpoint)", why);
    return r;
}
