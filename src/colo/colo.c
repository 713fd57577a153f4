/* colo.c: placeholder until the checkpoint engine lands. */
#include "colo/colo.h"

#include <errno.h>

int colo_primary_run(struct migration *m, int fd, struct stream_writer *sw, struct devstate *ds,
                     unsigned long *dirty)
{
    return -ENOTSUP;
}

int colo_secondary_run(struct migration *m, int fd, struct stream_reader *sr,
                       struct stream_loader *ld, struct devstate *ds)
{
    return -ENOTSUP;
}
