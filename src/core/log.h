/* log.h: leveled logging to stderr, with the subsystem named in every line. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Set from --verbose / TANDEM_LOG=debug; default LOG_WARN so test output stays clean. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

__attribute__((format(printf, 2, 3))) void tlog(enum log_level level, const char *fmt, ...);

#define log_err(...)   tlog(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  tlog(LOG_WARN, __VA_ARGS__)
#define log_info(...)  tlog(LOG_INFO, __VA_ARGS__)
#define log_debug(...) tlog(LOG_DEBUG, __VA_ARGS__)

/* Format an error message into a caller's buffer (err may be NULL or errlen 0: nothing). */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
