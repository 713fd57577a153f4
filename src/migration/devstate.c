/* devstate.c: vmstate tables for vCPU/chip state and the section registry of a whole machine. */
#include "migration/devstate.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/vcpu.h"

/* The state record (KVM ABI structs) travels as its x86 bytes, whichever engine made it. */
static int raw_put(struct stream_writer *sw, const void *field, size_t size)
{
    sw_put_bytes(sw, field, size);
    return sw_error(sw);
}

static int raw_get(struct stream_reader *sr, void *field, size_t size)
{
    sr_get_bytes(sr, field, size);
    return sr_error(sr);
}

static const struct vmstate_info raw_info = {
    .name = "kvm-abi", .size = 0, .put = raw_put, .get = raw_get};

static int cpu_post_load(void *opaque, uint32_t version_id)
{
    char err[128];
    int r = x86_cpu_state_check(opaque, err, sizeof(err));

    if (r)
        log_err("migration: %s", err);
    return r;
}

static const struct vmstate_field cpu_fields[] = {
    VMS_CUSTOM(struct x86_cpu_state, regs, &raw_info),
    VMS_CUSTOM(struct x86_cpu_state, sregs, &raw_info),
    VMS_CUSTOM(struct x86_cpu_state, xsave, &raw_info),
    VMS_CUSTOM(struct x86_cpu_state, xcrs, &raw_info),
    VMS_CUSTOM(struct x86_cpu_state, lapic, &raw_info),
    VMS_CUSTOM(struct x86_cpu_state, events, &raw_info),
    VMS_CUSTOM(struct x86_cpu_state, mp, &raw_info),
    VMS_CUSTOM(struct x86_cpu_state, dregs, &raw_info),
    VMS_U32(struct x86_cpu_state, nmsrs),
    VMS_CUSTOM(struct x86_cpu_state, msrs, &raw_info),
    VMS_END,
};

static const struct vmstate_desc cpu_vmsd = {
    .name = "cpu",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = cpu_fields,
    .post_load = cpu_post_load,
};

static int chips_post_load(void *opaque, uint32_t version_id)
{
    char err[128];
    int r = x86_vm_state_check(opaque, err, sizeof(err));

    if (r)
        log_err("migration: %s", err);
    return r;
}

static const struct vmstate_field chips_fields[] = {
    VMS_CUSTOM(struct x86_vm_state, pic_master, &raw_info),
    VMS_CUSTOM(struct x86_vm_state, pic_slave, &raw_info),
    VMS_CUSTOM(struct x86_vm_state, ioapic, &raw_info),
    VMS_CUSTOM(struct x86_vm_state, pit, &raw_info),
    VMS_CUSTOM(struct x86_vm_state, clock, &raw_info),
    VMS_END,
};

static const struct vmstate_desc chips_vmsd = {
    .name = "x86-chips",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = chips_fields,
    .post_load = chips_post_load,
};

int devstate_init(struct devstate *ds, struct vm *vm, struct ram_sink *sink)
{
    size_t n = 0;

    memset(ds, 0, sizeof(*ds));
    ds->vm = vm;
    ds->reg[n++] = (struct stream_section){
        .idstr = "ram", .instance_id = 0, .iter = &ram_iter_ops, .opaque = sink};
    for (int i = 0; i < vm->ncpus; i++)
        ds->reg[n++] = (struct stream_section){
            .idstr = "cpu", .instance_id = (uint32_t)i, .desc = &cpu_vmsd, .opaque = &ds->cpu[i]};
    ds->reg[n++] = (struct stream_section){
        .idstr = "x86-chips", .instance_id = 0, .desc = &chips_vmsd, .opaque = &ds->chips};
    for (unsigned i = 0; i < vm->ndevices; i++) {
        const struct vm_device *d = &vm->devices[i];
        if (!d->vmsd)
            continue; /* stateless */
        if (n >= DEVSTATE_MAX_SECTIONS)
            return -ENOSPC;
        ds->reg[n++] = (struct stream_section){
            .idstr = d->name, .instance_id = d->instance, .desc = d->vmsd, .opaque = d->opaque};
    }
    ds->nreg = n;
    return 0;
}

int devstate_add(struct devstate *ds, const struct stream_section *s)
{
    if (ds->nreg >= DEVSTATE_MAX_SECTIONS)
        return -ENOSPC;
    ds->reg[ds->nreg++] = *s;
    return 0;
}

int devstate_capture(struct devstate *ds)
{
    int r;

    for (int i = 0; i < ds->vm->ncpus; i++) {
        r = x86_cpu_state_get(ds->vm->vcpus[i], &ds->cpu[i]);
        if (r)
            return r;
    }
    return x86_vm_state_get(ds->vm, &ds->chips);
}

int devstate_save(struct devstate *ds, struct stream_writer *sw)
{
    /* Section ids: 1 is RAM; the rest follow the registry order. */
    for (size_t i = 1; i < ds->nreg; i++) {
        const struct stream_section *s = &ds->reg[i];
        if (!s->desc)
            continue; /* iterative sections (disks) are sent by their owners */
        int r = stream_save_section(sw, (uint32_t)(i + 1), s->idstr, s->instance_id, s->desc,
                                    s->opaque);
        if (r)
            return r;
    }
    return sw_error(sw);
}

int devstate_apply(struct devstate *ds)
{
    /* Chips first: the LAPIC state of each vCPU refers to the irqchip's routing. */
    int r = x86_vm_state_set(ds->vm, &ds->chips);

    for (int i = 0; i < ds->vm->ncpus && !r; i++)
        r = x86_cpu_state_set(ds->vm->vcpus[i], &ds->cpu[i]);
    return r;
}
