/* printf.c: printf-style formatting to the serial console or a buffer. */
#include "rt.h"

struct out {
    char *buf;   /* NULL: straight to the console */
    size_t size; /* capacity of buf including the NUL */
    size_t n;    /* characters produced so far */
};

static void out_c(struct out *o, char c)
{
    if (!o->buf)
        rt_putc(c);
    else if (o->n + 1 < o->size)
        o->buf[o->n] = c;
    o->n++;
}

static void out_pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        out_c(o, c);
}

static void out_num(struct out *o, uint64_t v, int neg, unsigned base, int upper, int width,
                    int zero, int left)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    int len = n + neg;
    if (left) {
        if (neg)
            out_c(o, '-');
        while (n)
            out_c(o, tmp[--n]);
        out_pad(o, ' ', width - len);
        return;
    }
    if (zero) {
        if (neg)
            out_c(o, '-');
        out_pad(o, '0', width - len);
    } else {
        out_pad(o, ' ', width - len);
        if (neg)
            out_c(o, '-');
    }
    while (n)
        out_c(o, tmp[--n]);
}

static void format(struct out *o, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            out_c(o, *fmt);
            continue;
        }
        int zero = 0, left = 0, width = 0, prec = -1, lng = 0;
        for (fmt++; *fmt == '0' || *fmt == '-'; fmt++) {
            if (*fmt == '0')
                zero = 1;
            else
                left = 1;
        }
        for (; *fmt >= '0' && *fmt <= '9'; fmt++)
            width = width * 10 + (*fmt - '0');
        if (*fmt == '.') {
            prec = 0;
            if (*++fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            }
            for (; *fmt >= '0' && *fmt <= '9'; fmt++)
                prec = prec * 10 + (*fmt - '0');
        }
        for (; *fmt == 'l' || *fmt == 'z'; fmt++)
            lng++;

        uint64_t u;
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t s = lng ? va_arg(ap, long) : va_arg(ap, int);
            u = s < 0 ? -(uint64_t)s : (uint64_t)s;
            out_num(o, u, s < 0, 10, 0, width, zero, left);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
            u = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            out_num(o, u, 0, *fmt == 'u' ? 10 : 16, *fmt == 'X', width, zero, left);
            break;
        case 'p':
            out_c(o, '0');
            out_c(o, 'x');
            out_num(o, (uintptr_t)va_arg(ap, void *), 0, 16, 0, width, zero, left);
            break;
        case 'c':
            out_pad(o, ' ', left ? 0 : width - 1);
            out_c(o, (char)va_arg(ap, int));
            out_pad(o, ' ', left ? width - 1 : 0);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int len = 0;
            while (s[len] && (prec < 0 || len < prec))
                len++;
            out_pad(o, ' ', left ? 0 : width - len);
            for (int i = 0; i < len; i++)
                out_c(o, s[i]);
            out_pad(o, ' ', left ? width - len : 0);
            break;
        }
        case '%':
            out_c(o, '%');
            break;
        case '\0':
            return;
        default:
            out_c(o, '%');
            out_c(o, *fmt);
            break;
        }
    }
}

int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = {.buf = buf, .size = size, .n = 0};
    char dummy;

    if (!o.buf) {
        o.buf = &dummy;
        o.size = 0;
    }
    format(&o, fmt, ap);
    if (o.size)
        o.buf[o.n < o.size ? o.n : o.size - 1] = '\0';
    return (int)o.n;
}

int rt_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rt_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int rt_vprintf(const char *fmt, va_list ap)
{
    struct out o = {.buf = NULL, .size = 0, .n = 0};
    format(&o, fmt, ap);
    return (int)o.n;
}

int rt_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rt_vprintf(fmt, ap);
    va_end(ap);
    return n;
}
