/* colo.h: COLO periodic mode: the checkpoint loop on both sides, output commit and failover. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct migration;
struct stream_writer;
struct stream_reader;
struct stream_loader;
struct devstate;

/*
 * Primary: entered by the outgoing migration thread once the initial precopy was loaded by
 * the secondary (the VM is paused). Runs checkpoints until failover or error, resumes the VM,
 * and returns. dirty is the outgoing run's page bitmap (reused between checkpoints).
 */
int colo_primary_run(struct migration *m, int fd, struct stream_writer *sw, struct devstate *ds,
                     unsigned long *dirty);
/*
 * Secondary: entered by the incoming thread after the initial state was applied (the VM is
 * paused and stays paused between checkpoints). Returns after failover or on shutdown.
 */
int colo_secondary_run(struct migration *m, int fd, struct stream_reader *sr,
                       struct stream_loader *ld, struct devstate *ds);
