/* serial.c: 8250/16550 UART emulation for COM1; output goes straight to the backend fd. */
#include "devices/serial.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/vmstate.h"

#define COM1_BASE 0x3f8
#define COM1_IRQ  4

#define UART_LSR_DR   0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_IER_RDI  0x01
#define UART_IER_THRI 0x02
#define UART_IIR_NO   0x01
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI  0x04
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10

static void serial_update_irq(struct serial_state *s)
{
    uint8_t iir = UART_IIR_NO;

    if ((s->ier & UART_IER_RDI) && (s->lsr & UART_LSR_DR))
        iir = UART_IIR_RDI;
    else if ((s->ier & UART_IER_THRI) && s->thr_ipending)
        iir = UART_IIR_THRI;
    s->iir = (uint8_t)((s->iir & 0xf0) | iir);
    if (s->vm)
        vm_irq_line(s->vm, (uint32_t)s->irq, iir != UART_IIR_NO);
}

static void serial_out_byte(struct serial_state *s, uint8_t c)
{
    if (s->mcr & UART_MCR_LOOP) {
        s->rbr = c;
        s->lsr |= UART_LSR_DR;
        return;
    }
    s->bytes_out++;
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    s->out(s->out_opaque, &iov, 1);
}

int serial_fd_send(void *opaque, const struct iovec *iov, int n)
{
    struct serial_state *s = opaque;
    int total = 0;

    if (s->out_fd < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            ssize_t w = write(s->out_fd, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return total ? total : -errno;
            p += w;
            left -= (size_t)w;
            total += (int)w;
        }
    }
    return total;
}

void serial_set_output(struct serial_state *s, int (*fn)(void *, const struct iovec *, int),
                       void *opaque)
{
    s->out = fn ? fn : serial_fd_send;
    s->out_opaque = fn ? opaque : s;
}

struct serial_state *serial_find(struct vm *vm)
{
    return vm_device_state(vm, "serial", 0);
}

static void serial_io(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct serial_state *s = opaque;
    uint8_t *v = data;

    if (len != 1) {
        if (!is_write)
            memset(data, 0xff, len);
        return;
    }
    if (is_write) {
        switch (off) {
        case 0:
            if (s->lcr & UART_LCR_DLAB) {
                s->dll = *v;
            } else {
                serial_out_byte(s, *v);
                s->thr_ipending = 1; /* transmitter is instantly empty again */
                s->lsr |= UART_LSR_THRE | UART_LSR_TEMT;
            }
            break;
        case 1:
            if (s->lcr & UART_LCR_DLAB) {
                s->dlm = *v;
            } else {
                s->ier = *v & 0x0f;
                if (s->ier & UART_IER_THRI)
                    s->thr_ipending = 1;
            }
            break;
        case 2:
            s->fcr = *v;
            break;
        case 3:
            s->lcr = *v;
            break;
        case 4:
            s->mcr = *v & 0x1f;
            break;
        case 7:
            s->scr = *v;
            break;
        default:
            break; /* LSR/MSR are read-only */
        }
    } else {
        switch (off) {
        case 0:
            if (s->lcr & UART_LCR_DLAB) {
                *v = s->dll;
            } else {
                *v = s->rbr;
                s->lsr &= (uint8_t)~UART_LSR_DR;
            }
            break;
        case 1:
            *v = (s->lcr & UART_LCR_DLAB) ? s->dlm : s->ier;
            break;
        case 2:
            *v = s->iir | ((s->fcr & 1) ? 0xc0 : 0);
            if ((s->iir & 0x0f) == UART_IIR_THRI)
                s->thr_ipending = 0; /* reading IIR acknowledges THRE */
            break;
        case 3:
            *v = s->lcr;
            break;
        case 4:
            *v = s->mcr;
            break;
        case 5:
            *v = s->lsr;
            break;
        case 6:
            *v = (s->mcr & UART_MCR_LOOP) ? (uint8_t)((s->mcr & 0x0c) << 4) : 0xb0;
            break;
        case 7:
            *v = s->scr;
            break;
        default:
            *v = 0xff;
            break;
        }
    }
    serial_update_irq(s);
}

static void serial_reset(void *opaque)
{
    struct serial_state *s = opaque;

    s->rbr = s->ier = s->fcr = s->lcr = s->mcr = s->scr = s->dlm = 0;
    s->dll = 12; /* 9600 baud */
    s->iir = UART_IIR_NO;
    s->lsr = UART_LSR_THRE | UART_LSR_TEMT;
    s->msr = 0xb0;
    s->thr_ipending = 0;
}

static void serial_destroy(void *opaque)
{
    struct serial_state *s = opaque;

    if (s->out_fd > STDERR_FILENO)
        close(s->out_fd);
    free(s);
}

static int serial_post_load(void *opaque, uint32_t version_id)
{
    struct serial_state *s = opaque;

    /* Hostile stream: only values a real UART can hold. */
    if (s->ier & 0xf0 || s->mcr & 0xe0)
        return -EINVAL;
    serial_update_irq(s);
    return 0;
}

static const struct vmstate_field serial_fields[] = {
    VMS_U8(struct serial_state, rbr),
    VMS_U8(struct serial_state, ier),
    VMS_U8(struct serial_state, iir),
    VMS_U8(struct serial_state, fcr),
    VMS_U8(struct serial_state, lcr),
    VMS_U8(struct serial_state, mcr),
    VMS_U8(struct serial_state, lsr),
    VMS_U8(struct serial_state, msr),
    VMS_U8(struct serial_state, scr),
    VMS_U8(struct serial_state, dll),
    VMS_U8(struct serial_state, dlm),
    VMS_U8(struct serial_state, thr_ipending),
    VMS_END,
};

static const struct vmstate_desc serial_vmsd = {
    .name = "serial",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = serial_fields,
    .post_load = serial_post_load,
};

int serial_create(struct vm *vm, const char *spec, char *err, size_t errlen)
{
    struct serial_state *s = calloc(1, sizeof(*s));
    struct vm_device dev;
    int r;

    if (!s)
        return -ENOMEM;
    s->vm = vm;
    s->irq = COM1_IRQ;
    s->in_fd = -1;
    if (!strcmp(spec, "stdio")) {
        s->out_fd = STDOUT_FILENO;
    } else if (!strcmp(spec, "none")) {
        s->out_fd = -1;
    } else if (!strncmp(spec, "file:", 5) && spec[5]) {
        s->out_fd = open(spec + 5, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->out_fd < 0) {
            r = -errno;
            snprintf(err, errlen, "--serial: cannot open '%s': %s", spec + 5, strerror(errno));
            free(s);
            return r;
        }
    } else {
        snprintf(err, errlen, "--serial: expected stdio, file:PATH or none, got '%s'", spec);
        free(s);
        return -EINVAL;
    }
    serial_set_output(s, NULL, NULL);
    serial_reset(s);
    r = bus_register(&vm->pio, COM1_BASE, 8, serial_io, s, "serial");
    if (r) {
        snprintf(err, errlen, "serial: cannot claim ports 0x%x: %s", COM1_BASE, strerror(-r));
        serial_destroy(s);
        return r;
    }
    dev = (struct vm_device){.name = "serial",
                             .instance = 0,
                             .vmsd = &serial_vmsd,
                             .opaque = s,
                             .reset = serial_reset,
                             .destroy = serial_destroy};
    r = vm_add_device(vm, &dev);
    if (r) {
        bus_unregister(&vm->pio, COM1_BASE);
        serial_destroy(s);
        return r;
    }
    return 0;
}
