/* serial.h: a 16550-compatible UART (COM1 at 0x3f8, IRQ 4) with a stdio, file or null backend. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct vm;

struct serial_state {
    /* Registers (migratable). */
    uint8_t rbr, ier, iir, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
    uint8_t thr_ipending; /* THRE interrupt pending */
    /* Host side (not migrated). */
    struct vm *vm;
    int out_fd; /* -1: discard */
    int in_fd;  /* -1: no input */
    int irq;
    uint64_t bytes_out;
    /* Where transmitted bytes go: the backend fd by default; COLO holds them per epoch. */
    int (*out)(void *opaque, const struct iovec *iov, int n);
    void *out_opaque;
};

/* The serial port's default output (opaque = struct serial_state *): write to the backend. */
int serial_fd_send(void *opaque, const struct iovec *iov, int n);
/* Route output through fn (NULL restores the backend). Call with the vCPUs paused. */
void serial_set_output(struct serial_state *s, int (*fn)(void *, const struct iovec *, int),
                       void *opaque);
struct serial_state *serial_find(struct vm *vm);

/* spec: "stdio", "file:PATH", "none". Registers COM1 on the PIO bus and in the inventory. */
int serial_create(struct vm *vm, const char *spec, char *err, size_t errlen);
