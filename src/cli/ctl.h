/* ctl.h: `tandem ctl`: a one-shot QMP client (one command, or a tail of events). */
#pragma once

/*
 * argv[0] is "ctl"; the options follow (see `tandem ctl --help`). Returns the process exit
 * status: 0 success, 1 failure (connection, timeout, or the command's error reply, whose desc
 * goes to stderr), 2 bad usage.
 */
int ctl_main(int argc, char **argv);
