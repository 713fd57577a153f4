/* format.h: the constants of tandem's migration stream; docs/stream.md is their prose twin. */
#pragma once

#include <stdint.h>

/*
 * A stream is: header, then segments. A segment is a run of records ended by an EOF record that
 * carries the CRC-32C of every byte since the previous checksum point (stream start or the last
 * EOF). Every checkpoint is one segment, so every checkpoint is checksummed on its own.
 *
 *   stream  := header segment*
 *   header  := "TNDM" u32 format_version
 *   segment := record* EOF
 *   record  := section | COMMAND
 *   section := (START | FULL) u32 section_id name u32 instance_id u32 version payload FOOTER u32 id
 *            | (PART | END) u32 section_id payload FOOTER u32 section_id
 *   EOF     := 0x00 u32 crc32c
 */

#define STREAM_MAGIC              "TNDM"
#define STREAM_MAGIC_LEN          4
#define STREAM_FORMAT_VERSION     1u /* what we write */
#define STREAM_FORMAT_MIN_VERSION 1u /* oldest we read */

/* Names (idstr, subsection names) are u8 length + bytes, 1..255 printable ASCII, no NUL. */
#define STREAM_NAME_MAX 255

/*
 * Record tags (one byte). The byte values are the seeds' (QEMU_VM_*), so EOF is 0x00: the one enum
 * in the stream where 0 is not "invalid". A zero-filled input still fails: it reads as an EOF whose
 * checksum does not match.
 */
enum stream_tag {
    STREAM_TAG_EOF = 0x00,
    STREAM_TAG_SECTION_START = 0x01,
    STREAM_TAG_SECTION_PART = 0x02,
    STREAM_TAG_SECTION_END = 0x03,
    STREAM_TAG_SECTION_FULL = 0x04,
    STREAM_TAG_SUBSECTION = 0x05,
    STREAM_TAG_COMMAND = 0x08,
    STREAM_TAG_FOOTER = 0x7e,
};

/*
 * Commands: u16 id, u16 payload length, payload. Each id has a fixed payload length:
 *   OPEN_RETURN_PATH  0  the destination starts answering on the return path
 *   PING              4  u32 cookie, echoed back on the return path
 *   ENABLE_COLO       0  the destination prepares its colo cache before RAM arrives
 *   COLO_SESSION     36  tandem: be32 version (2), be32 heartbeat interval ms, be32 heartbeat
 *                        timeout ms, 16-byte random token that authenticates the heartbeat
 *                        (and hybrid frame link) connections, be32 mode (0 periodic, 1
 *                        hybrid), be32 x-compare-timeout ms (colo/handover.c); follows
 *                        ENABLE_COLO
 */
enum stream_cmd {
    STREAM_CMD_INVALID = 0,
    STREAM_CMD_OPEN_RETURN_PATH = 1,
    STREAM_CMD_PING = 2,
    STREAM_CMD_ENABLE_COLO = 3,
    STREAM_CMD_COLO_SESSION = 4,
    STREAM_CMD__MAX,
};

/* Upper bound of any command payload; the loader reads payloads into a buffer of this size. */
#define STREAM_CMD_PAYLOAD_MAX 256

/* RAM section payload records (one tag byte each). */
enum ram_record {
    RAM_REC_INVALID = 0,
    RAM_REC_PAGES = 1, /* u64 offset, u32 npages, npages * page_size bytes */
    RAM_REC_ZERO = 2,  /* u64 offset, u32 npages: a run of zero pages, no data */
    RAM_REC_END = 3,   /* u8 flags: ends this section's payload */
};

/* RAM_REC_END flags. */
#define RAM_END_ROUND     0x01u /* every page dirty at the round's start has now been sent */
#define RAM_END_FLAGS_ALL RAM_END_ROUND

#define RAM_SECTION_VERSION 1u
