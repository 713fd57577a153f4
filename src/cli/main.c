/* main.c: the tandem entry point: dispatches to `run` (a VM) or `ctl` (a QMP client). */
#include <stdio.h>
#include <string.h>

#include "cli/ctl.h"
#include "cli/run.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: tandem run [OPTIONS]           run a VM (see `tandem run --help`)\n"
               "       tandem ctl --qmp PATH CMD [ARGS] send one QMP command (see `tandem ctl "
               "--help`)\n"
               "       tandem --version | --help\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "run"))
        return run_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ctl"))
        return ctl_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("tandem %s\n", TANDEM_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tandem: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
