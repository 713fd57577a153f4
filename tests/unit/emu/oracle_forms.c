/* oracle_forms.c: the table of instruction forms for the Unicorn oracle, with the SDM's undefined
 * flags.
 *
 * Each row is expanded by test_oracle.c into one form per operand size (SZ*) and per r/m kind
 * (register, memory). Registers, base/index/scale/displacement, REX bits, 67h, segment overrides,
 * LOCK and immediates are drawn at random per state.
 *
 * Undefined flags (.undef, and .rule for the input-dependent ones) follow the "Flags Affected"
 * section of each instruction's page in the Intel SDM, Vol. 2 (Instruction Set Reference); the
 * row comments cite it. A flag is masked ONLY where the SDM says "undefined".
 */
#include "oracle_forms.h"

#include "accel/emu/cpu.h"

#define OP1(a)       .nop = 1, .op = {a}
#define OP2(a, b)    .nop = 2, .op = {a, b}
#define OP3(a, b, c) .nop = 3, .op = {a, b, c}
#define MREG         .modrm = MR_REG
#define DIG(d)       .modrm = MR_DIGIT, .digit = d

/* SF ZF AF PF: MUL/IMUL ("The SF, ZF, AF, and PF flags are undefined."). */
#define UND_MUL (FL_SF | FL_ZF | FL_AF | FL_PF)
/* DIV/IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined." */
#define UND_DIV FL_ARITH
/* BSF/BSR: "The CF, OF, SF, AF, and PF flags are undefined." */
#define UND_BSF (FL_CF | FL_OF | FL_SF | FL_AF | FL_PF)
/* BT/BTS/BTR/BTC: "The ZF flag is unaffected. The OF, SF, AF, and PF flags are undefined." */
#define UND_BT (FL_OF | FL_SF | FL_AF | FL_PF)
/* LZCNT/TZCNT: "OF, SF, PF and AF flags are undefined." */
#define UND_CNT (FL_OF | FL_SF | FL_PF | FL_AF)

/* The eight classic ALU operations: every encoding. AND/OR/XOR: "The OF and CF flags are
 * cleared; the SF, ZF, and PF flags are set according to the result. The state of the AF flag is
 * undefined." (SDM Vol. 2 AND, OR, XOR). ADD/ADC/SUB/SBB/CMP: all six defined. 82h is invalid in
 * 64-bit mode (SDM Vol. 2 Appendix A, opcode map note "i64"): expected #UD in both. */
#define ALU(nm, b, und, lk)                                                                        \
    {.name = nm " r/m8, r8",                                                                       \
     .group = G_ALU,                                                                               \
     OP1(b),                                                                                       \
     MREG,                                                                                         \
     .sizes = SZ8,                                                                                 \
     .rm = RM_BOTH,                                                                                \
     .undef = und,                                                                                 \
     .flags = lk},                                                                                 \
        {.name = nm " r/m, r",                                                                     \
         .group = G_ALU,                                                                           \
         OP1(b + 1),                                                                               \
         MREG,                                                                                     \
         .sizes = SZV,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .undef = und,                                                                             \
         .flags = lk},                                                                             \
        {.name = nm " r8, r/m8",                                                                   \
         .group = G_ALU,                                                                           \
         OP1(b + 2),                                                                               \
         MREG,                                                                                     \
         .sizes = SZ8,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .undef = und},                                                                            \
        {.name = nm " r, r/m",                                                                     \
         .group = G_ALU,                                                                           \
         OP1(b + 3),                                                                               \
         MREG,                                                                                     \
         .sizes = SZV,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .undef = und},                                                                            \
        {.name = nm " al, imm8",                                                                   \
         .group = G_ALU,                                                                           \
         OP1(b + 4),                                                                               \
         .sizes = SZ8,                                                                             \
         .imm = I_8,                                                                               \
         .undef = und},                                                                            \
        {.name = nm " eax, immz",                                                                  \
         .group = G_ALU,                                                                           \
         OP1(b + 5),                                                                               \
         .sizes = SZV,                                                                             \
         .imm = I_Z,                                                                               \
         .undef = und},                                                                            \
        {.name = nm " r/m8, imm8",                                                                 \
         .group = G_ALU,                                                                           \
         OP1(0x80),                                                                                \
         DIG(b >> 3),                                                                              \
         .sizes = SZ8,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .imm = I_8,                                                                               \
         .undef = und,                                                                             \
         .flags = lk},                                                                             \
        {.name = nm " r/m, immz",                                                                  \
         .group = G_ALU,                                                                           \
         OP1(0x81),                                                                                \
         DIG(b >> 3),                                                                              \
         .sizes = SZV,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .imm = I_Z,                                                                               \
         .undef = und,                                                                             \
         .flags = lk},                                                                             \
        {.name = nm " r/m, imm8s",                                                                 \
         .group = G_ALU,                                                                           \
         OP1(0x83),                                                                                \
         DIG(b >> 3),                                                                              \
         .sizes = SZV,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .imm = I_8,                                                                               \
         .undef = und,                                                                             \
         .flags = lk},                                                                             \
    {                                                                                              \
        .name = nm " 82 (invalid in 64-bit)", .group = G_ALU, OP1(0x82), DIG(b >> 3),              \
        .sizes = SZ8, .rm = RM_REG, .imm = I_8                                                     \
    }

/* Shifts and rotates: /digit with count 1 (D0/D1), CL (D2/D3) and imm8 (C0/C1). */
#define SHIFT(nm, d, rule_)                                                                        \
    {.name = nm " r/m8, 1",                                                                        \
     .group = G_SHIFT,                                                                             \
     OP1(0xd0),                                                                                    \
     DIG(d),                                                                                       \
     .sizes = SZ8,                                                                                 \
     .rm = RM_BOTH,                                                                                \
     .rule = rule_,                                                                                \
     .setup = ST_COUNT1},                                                                          \
        {.name = nm " r/m, 1",                                                                     \
         .group = G_SHIFT,                                                                         \
         OP1(0xd1),                                                                                \
         DIG(d),                                                                                   \
         .sizes = SZV,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .rule = rule_,                                                                            \
         .setup = ST_COUNT1},                                                                      \
        {.name = nm " r/m8, cl",                                                                   \
         .group = G_SHIFT,                                                                         \
         OP1(0xd2),                                                                                \
         DIG(d),                                                                                   \
         .sizes = SZ8,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .rule = rule_,                                                                            \
         .setup = ST_SHIFT_CL},                                                                    \
        {.name = nm " r/m, cl",                                                                    \
         .group = G_SHIFT,                                                                         \
         OP1(0xd3),                                                                                \
         DIG(d),                                                                                   \
         .sizes = SZV,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .rule = rule_,                                                                            \
         .setup = ST_SHIFT_CL},                                                                    \
        {.name = nm " r/m8, imm8",                                                                 \
         .group = G_SHIFT,                                                                         \
         OP1(0xc0),                                                                                \
         DIG(d),                                                                                   \
         .sizes = SZ8,                                                                             \
         .rm = RM_BOTH,                                                                            \
         .imm = I_8,                                                                               \
         .rule = rule_,                                                                            \
         .setup = ST_SHIFT_IMM},                                                                   \
    {                                                                                              \
        .name = nm " r/m, imm8", .group = G_SHIFT, OP1(0xc1), DIG(d), .sizes = SZV, .rm = RM_BOTH, \
        .imm = I_8, .rule = rule_, .setup = ST_SHIFT_IMM                                           \
    }

/* String instructions, plain and with each REP prefix they take. */
#define STR(nm, b, rep1, rep2)                                                                     \
    {.name = nm "b", .group = G_STRING, OP1(b), .sizes = SZ8, .setup = ST_STR, .flags = X_STR},    \
        {.name = nm,                                                                               \
         .group = G_STRING,                                                                        \
         OP1(b + 1),                                                                               \
         .sizes = SZV,                                                                             \
         .setup = ST_STR,                                                                          \
         .flags = X_STR},                                                                          \
        {.name = rep1 " " nm "b",                                                                  \
         .group = G_STRING,                                                                        \
         .pfx = 0xf3,                                                                              \
         OP1(b),                                                                                   \
         .sizes = SZ8,                                                                             \
         .setup = ST_STR,                                                                          \
         .flags = X_STR},                                                                          \
        {.name = rep1 " " nm,                                                                      \
         .group = G_STRING,                                                                        \
         .pfx = 0xf3,                                                                              \
         OP1(b + 1),                                                                               \
         .sizes = SZV,                                                                             \
         .setup = ST_STR,                                                                          \
         .flags = X_STR},                                                                          \
        {.name = rep2 " " nm "b",                                                                  \
         .group = G_STRING,                                                                        \
         .pfx = 0xf2,                                                                              \
         OP1(b),                                                                                   \
         .sizes = SZ8,                                                                             \
         .setup = ST_STR,                                                                          \
         .flags = X_STR},                                                                          \
    {                                                                                              \
        .name = rep2 " " nm, .group = G_STRING, .pfx = 0xf2, OP1(b + 1), .sizes = SZV,             \
        .setup = ST_STR, .flags = X_STR                                                            \
    }

const struct oracle_form oracle_forms[] = {
    /* ---- data movement (no flags) ---- */
    {.name = "mov r/m8, r8", .group = G_MOV, OP1(0x88), MREG, .sizes = SZ8, .rm = RM_BOTH},
    {.name = "mov r/m, r", .group = G_MOV, OP1(0x89), MREG, .sizes = SZV, .rm = RM_BOTH},
    {.name = "mov r8, r/m8", .group = G_MOV, OP1(0x8a), MREG, .sizes = SZ8, .rm = RM_BOTH},
    {.name = "mov r, r/m", .group = G_MOV, OP1(0x8b), MREG, .sizes = SZV, .rm = RM_BOTH},
    {.name = "mov r/m8, imm8",
     .group = G_MOV,
     OP1(0xc6),
     DIG(0),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .imm = I_8},
    {.name = "mov r/m, immz",
     .group = G_MOV,
     OP1(0xc7),
     DIG(0),
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_Z},
    {.name = "mov r8, imm8 (b0+r)",
     .group = G_MOV,
     OP1(0xb0),
     .sizes = SZ8,
     .imm = I_V,
     .flags = X_PLUSR},
    {.name = "mov r, immv (b8+r)",
     .group = G_MOV,
     OP1(0xb8),
     .sizes = SZV,
     .imm = I_V,
     .flags = X_PLUSR},
    {.name = "mov al, moffs8", .group = G_MOV, OP1(0xa0), .sizes = SZ8, .imm = I_MOFFS},
    {.name = "mov eax, moffs", .group = G_MOV, OP1(0xa1), .sizes = SZV, .imm = I_MOFFS},
    {.name = "mov moffs8, al", .group = G_MOV, OP1(0xa2), .sizes = SZ8, .imm = I_MOFFS},
    {.name = "mov moffs, eax", .group = G_MOV, OP1(0xa3), .sizes = SZV, .imm = I_MOFFS},
    {.name = "movzx r, r/m8",
     .group = G_MOV,
     OP2(0x0f, 0xb6),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_RM8},
    {.name = "movzx r, r/m16",
     .group = G_MOV,
     OP2(0x0f, 0xb7),
     MREG,
     .sizes = SZ32 | SZ64,
     .rm = RM_BOTH,
     .flags = X_RM16},
    {.name = "movsx r, r/m8",
     .group = G_MOV,
     OP2(0x0f, 0xbe),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_RM8},
    {.name = "movsx r, r/m16",
     .group = G_MOV,
     OP2(0x0f, 0xbf),
     MREG,
     .sizes = SZ32 | SZ64,
     .rm = RM_BOTH,
     .flags = X_RM16},
    {.name = "movsxd r, r/m32", .group = G_MOV, OP1(0x63), MREG, .sizes = SZV, .rm = RM_BOTH},
    /* LEA with a register operand is #UD (SDM Vol. 2 LEA, "#UD If source operand is not a
     * memory location"). */
    {.name = "lea r, m", .group = G_MOV, OP1(0x8d), MREG, .sizes = SZV, .rm = RM_BOTH},
    {.name = "xchg r/m8, r8",
     .group = G_MOV,
     OP1(0x86),
     MREG,
     .sizes = SZ8,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "xchg r/m, r",
     .group = G_MOV,
     OP1(0x87),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    /* 90+r: without REX.B, 90 is NOP (no zero-extension of EAX). */
    {.name = "xchg eax, r (90+r)", .group = G_MOV, OP1(0x90), .sizes = SZV, .flags = X_PLUSR},
    {.name = "bswap r", .group = G_MOV, OP2(0x0f, 0xc8), .sizes = SZ32 | SZ64, .flags = X_PLUSR},
    /* BSWAP r16: "the result is undefined" (SDM Vol. 2 BSWAP). */
    {.name = "bswap r16",
     .group = G_MOV,
     OP2(0x0f, 0xc8),
     .sizes = SZ16,
     .rule = U_BSWAP16,
     .flags = X_PLUSR},
    {.name = "movbe r, m",
     .group = G_MOV,
     OP3(0x0f, 0x38, 0xf0),
     MREG,
     .sizes = SZV,
     .rm = RM_MEM,
     .need = N_MOVBE},
    {.name = "movbe m, r",
     .group = G_MOV,
     OP3(0x0f, 0x38, 0xf1),
     MREG,
     .sizes = SZV,
     .rm = RM_MEM,
     .need = N_MOVBE},
    {.name = "cbw/cwde/cdqe", .group = G_MOV, OP1(0x98), .sizes = SZV},
    {.name = "cwd/cdq/cqo", .group = G_MOV, OP1(0x99), .sizes = SZV},
    /* CMOVcc: a false condition still writes a 32-bit destination (zero-extends). */
    {.name = "cmovcc r, r/m",
     .group = G_MOV,
     OP2(0x0f, 0x40),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_CC},
    {.name = "setcc r/m8",
     .group = G_MOV,
     OP2(0x0f, 0x90),
     DIG(0),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .flags = X_CC},
    {.name = "xlat", .group = G_MOV, OP1(0xd7), .sizes = SZ8, .setup = ST_XLAT},

    /* ---- integer ALU ---- */
    ALU("add", 0x00, 0, X_LOCK),
    ALU("or", 0x08, FL_AF, X_LOCK),
    ALU("adc", 0x10, 0, X_LOCK),
    ALU("sbb", 0x18, 0, X_LOCK),
    ALU("and", 0x20, FL_AF, X_LOCK),
    ALU("sub", 0x28, 0, X_LOCK),
    ALU("xor", 0x30, FL_AF, X_LOCK),
    ALU("cmp", 0x38, 0, 0),
    /* TEST: "The OF and CF flags are set to 0. The SF, ZF, and PF flags are set according to the
     * result. The state of the AF flag is undefined." (SDM Vol. 2 TEST) */
    {.name = "test r/m8, r8",
     .group = G_ALU,
     OP1(0x84),
     MREG,
     .sizes = SZ8,
     .rm = RM_BOTH,
     .undef = FL_AF},
    {.name = "test r/m, r",
     .group = G_ALU,
     OP1(0x85),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = FL_AF},
    {.name = "test al, imm8", .group = G_ALU, OP1(0xa8), .sizes = SZ8, .imm = I_8, .undef = FL_AF},
    {.name = "test eax, immz", .group = G_ALU, OP1(0xa9), .sizes = SZV, .imm = I_Z, .undef = FL_AF},
    {.name = "test r/m8, imm8",
     .group = G_ALU,
     OP1(0xf6),
     DIG(0),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .imm = I_8,
     .undef = FL_AF},
    {.name = "test r/m, immz",
     .group = G_ALU,
     OP1(0xf7),
     DIG(0),
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_Z,
     .undef = FL_AF},
    /* INC/DEC: "The CF flag is not affected. The OF, SF, ZF, AF, and PF flags are set according
     * to the result." NEG: "The CF flag set to 0 if the source operand is 0; otherwise it is set
     * to 1. The OF, SF, ZF, AF, and PF flags are set according to the result." NOT: none. */
    {.name = "inc r/m8",
     .group = G_ALU,
     OP1(0xfe),
     DIG(0),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "inc r/m",
     .group = G_ALU,
     OP1(0xff),
     DIG(0),
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "dec r/m8",
     .group = G_ALU,
     OP1(0xfe),
     DIG(1),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "dec r/m",
     .group = G_ALU,
     OP1(0xff),
     DIG(1),
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "not r/m8",
     .group = G_ALU,
     OP1(0xf6),
     DIG(2),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "not r/m",
     .group = G_ALU,
     OP1(0xf7),
     DIG(2),
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "neg r/m8",
     .group = G_ALU,
     OP1(0xf6),
     DIG(3),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "neg r/m",
     .group = G_ALU,
     OP1(0xf7),
     DIG(3),
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    /* CMPXCHG: "The ZF flag is set if the values in the destination operand and register AL, AX,
     * or EAX are equal; otherwise it is cleared. The CF, PF, AF, SF, and OF flags are set
     * according to the results of the comparison operation." XADD: as ADD. CMPXCHG8B/16B: "The
     * ZF flag is set if the destination operand and EDX:EAX are equal; otherwise it is cleared.
     * The CF, PF, AF, SF, and OF flags are unaffected." (SDM Vol. 2) */
    {.name = "cmpxchg r/m8, r8",
     .group = G_ALU,
     OP2(0x0f, 0xb0),
     MREG,
     .sizes = SZ8,
     .rm = RM_BOTH,
     .setup = ST_CMPXCHG,
     .flags = X_LOCK},
    {.name = "cmpxchg r/m, r",
     .group = G_ALU,
     OP2(0x0f, 0xb1),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .setup = ST_CMPXCHG,
     .flags = X_LOCK},
    {.name = "xadd r/m8, r8",
     .group = G_ALU,
     OP2(0x0f, 0xc0),
     MREG,
     .sizes = SZ8,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "xadd r/m, r",
     .group = G_ALU,
     OP2(0x0f, 0xc1),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .flags = X_LOCK},
    {.name = "cmpxchg8b m64",
     .group = G_ALU,
     OP2(0x0f, 0xc7),
     DIG(1),
     .sizes = SZ32,
     .rm = RM_MEM,
     .setup = ST_CX8,
     .flags = X_LOCK},
    {.name = "cmpxchg16b m128",
     .group = G_ALU,
     OP2(0x0f, 0xc7),
     DIG(1),
     .sizes = SZ64,
     .rm = RM_MEM,
     .setup = ST_CX16,
     .flags = X_LOCK,
     .need = N_CX16},

    /* ---- multiply and divide ---- */
    /* MUL: "The OF and CF flags are set to 0 if the upper half of the result is 0; otherwise,
     * they are set to 1. The SF, ZF, AF, and PF flags are undefined." IMUL (all three forms):
     * CF/OF defined, "The SF, ZF, AF, and PF flags are undefined." (SDM Vol. 2 MUL, IMUL) */
    {.name = "mul r/m8",
     .group = G_MULDIV,
     OP1(0xf6),
     DIG(4),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .undef = UND_MUL},
    {.name = "mul r/m",
     .group = G_MULDIV,
     OP1(0xf7),
     DIG(4),
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_MUL},
    {.name = "imul r/m8",
     .group = G_MULDIV,
     OP1(0xf6),
     DIG(5),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .undef = UND_MUL},
    {.name = "imul r/m",
     .group = G_MULDIV,
     OP1(0xf7),
     DIG(5),
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_MUL},
    {.name = "imul r, r/m",
     .group = G_MULDIV,
     OP2(0x0f, 0xaf),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_MUL},
    {.name = "imul r, r/m, immz",
     .group = G_MULDIV,
     OP1(0x69),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_Z,
     .undef = UND_MUL},
    {.name = "imul r, r/m, imm8",
     .group = G_MULDIV,
     OP1(0x6b),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_8,
     .undef = UND_MUL},
    /* DIV/IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined." #DE on a zero divisor or a
     * quotient too large (SDM Vol. 2 DIV, IDIV): compared as an exception outcome. */
    {.name = "div r/m8",
     .group = G_MULDIV,
     OP1(0xf6),
     DIG(6),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .undef = UND_DIV,
     .setup = ST_DIV},
    {.name = "div r/m",
     .group = G_MULDIV,
     OP1(0xf7),
     DIG(6),
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_DIV,
     .setup = ST_DIV},
    {.name = "idiv r/m8",
     .group = G_MULDIV,
     OP1(0xf6),
     DIG(7),
     .sizes = SZ8,
     .rm = RM_BOTH,
     .undef = UND_DIV,
     .setup = ST_IDIV},
    {.name = "idiv r/m",
     .group = G_MULDIV,
     OP1(0xf7),
     DIG(7),
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_DIV,
     .setup = ST_IDIV},

    /* ---- shifts and rotates ----
     * ROL/ROR/RCL/RCR: "If the masked count is 0, the flags are not affected. If the masked count
     * is 1, then the OF flag is affected, otherwise (masked count is greater than 1) the OF flag
     * is undefined. The CF flag is affected when the masked count is nonzero. The SF, ZF, AF, and
     * PF flags are always unaffected." (SDM Vol. 2 RCL/RCR/ROL/ROR)
     * SAL/SAR/SHL/SHR: "The CF flag contains the value of the last bit shifted out of the
     * destination operand; it is undefined for SHL and SHR instructions where the count is
     * greater than or equal to the size (in bits) of the destination operand. The OF flag is
     * affected only for 1-bit shifts; otherwise, it is undefined. [...] If the count is 0, the
     * flags are not affected. For a non-zero count, the AF flag is undefined." (SDM Vol. 2
     * SAL/SAR/SHL/SHR) */
    SHIFT("rol", 0, U_ROT),
    SHIFT("ror", 1, U_ROT),
    SHIFT("rcl", 2, U_ROT),
    SHIFT("rcr", 3, U_ROT),
    SHIFT("shl", 4, U_SHL),
    SHIFT("shr", 5, U_SHL),
    SHIFT("sar", 7, U_SAR),
    /* SHLD/SHRD: "If the count is 1 or greater, the CF flag is filled with the last bit shifted
     * out of the destination operand and the SF, ZF, and PF flags are set according to the value
     * of the result. For a 1-bit shift, the OF flag is set if a sign change occurred; otherwise,
     * it is cleared. For shifts greater than 1 bit, the OF flag is undefined. If a shift occurs,
     * the AF flag is undefined. If the count operand is 0, the flags are not affected. If the
     * count is greater than the operand size, the flags are undefined." and the destination is
     * undefined (SDM Vol. 2 SHLD, SHRD): 16-bit counts 17..31 are not generated. */
    {.name = "shld r/m, r, imm8",
     .group = G_SHIFT,
     OP2(0x0f, 0xa4),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_8,
     .rule = U_SHXD,
     .setup = ST_SHIFT_IMM},
    {.name = "shld r/m, r, cl",
     .group = G_SHIFT,
     OP2(0x0f, 0xa5),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .rule = U_SHXD,
     .setup = ST_SHIFT_CL},
    {.name = "shrd r/m, r, imm8",
     .group = G_SHIFT,
     OP2(0x0f, 0xac),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_8,
     .rule = U_SHXD,
     .setup = ST_SHIFT_IMM},
    {.name = "shrd r/m, r, cl",
     .group = G_SHIFT,
     OP2(0x0f, 0xad),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .rule = U_SHXD,
     .setup = ST_SHIFT_CL},

    /* ---- bit operations ---- */
    /* BT/BTS/BTR/BTC: "The CF flag contains the value of the selected bit. The ZF flag is
     * unaffected. The OF, SF, AF, and PF flags are undefined." (SDM Vol. 2 BT) */
    {.name = "bt r/m, r",
     .group = G_BIT,
     OP2(0x0f, 0xa3),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_BT,
     .setup = ST_BT_REG},
    {.name = "bts r/m, r",
     .group = G_BIT,
     OP2(0x0f, 0xab),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_BT,
     .setup = ST_BT_REG,
     .flags = X_LOCK},
    {.name = "btr r/m, r",
     .group = G_BIT,
     OP2(0x0f, 0xb3),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_BT,
     .setup = ST_BT_REG,
     .flags = X_LOCK},
    {.name = "btc r/m, r",
     .group = G_BIT,
     OP2(0x0f, 0xbb),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_BT,
     .setup = ST_BT_REG,
     .flags = X_LOCK},
    {.name = "bt r/m, imm8",
     .group = G_BIT,
     OP2(0x0f, 0xba),
     DIG(4),
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_8,
     .undef = UND_BT},
    {.name = "bts r/m, imm8",
     .group = G_BIT,
     OP2(0x0f, 0xba),
     DIG(5),
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_8,
     .undef = UND_BT,
     .flags = X_LOCK},
    {.name = "btr r/m, imm8",
     .group = G_BIT,
     OP2(0x0f, 0xba),
     DIG(6),
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_8,
     .undef = UND_BT,
     .flags = X_LOCK},
    {.name = "btc r/m, imm8",
     .group = G_BIT,
     OP2(0x0f, 0xba),
     DIG(7),
     .sizes = SZV,
     .rm = RM_BOTH,
     .imm = I_8,
     .undef = UND_BT,
     .flags = X_LOCK},
    /* BSF/BSR: "The ZF flag is set to 1 if the source operand is 0; otherwise, the ZF flag is
     * cleared. The CF, OF, SF, AF, and PF flags are undefined." "If the content of the source
     * operand is 0, the content of the destination operand is undefined." (SDM Vol. 2 BSF, BSR) */
    {.name = "bsf r, r/m",
     .group = G_BIT,
     OP2(0x0f, 0xbc),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_BSF,
     .rule = U_BSF},
    {.name = "bsr r, r/m",
     .group = G_BIT,
     OP2(0x0f, 0xbd),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_BSF,
     .rule = U_BSF},
    /* TZCNT/LZCNT: "ZF is set to 1 in case of zero output [...], CF flag is set to 1 if input
     * was zero and cleared otherwise. OF, SF, PF and AF flags are undefined." POPCNT: "OF, SF,
     * ZF, AF, CF, PF are all cleared. ZF is set if SRC = 0, otherwise ZF is cleared." */
    {.name = "tzcnt r, r/m",
     .group = G_BIT,
     .pfx = 0xf3,
     OP2(0x0f, 0xbc),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_CNT,
     .need = N_BMI1},
    {.name = "lzcnt r, r/m",
     .group = G_BIT,
     .pfx = 0xf3,
     OP2(0x0f, 0xbd),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .undef = UND_CNT,
     .need = N_LZCNT},
    {.name = "popcnt r, r/m",
     .group = G_BIT,
     .pfx = 0xf3,
     OP2(0x0f, 0xb8),
     MREG,
     .sizes = SZV,
     .rm = RM_BOTH,
     .need = N_POPCNT},

    /* ---- strings (CMPS/SCAS: flags as CMP) ---- */
    STR("movs", 0xa4, "rep", "repne(f2)"),
    STR("stos", 0xaa, "rep", "repne(f2)"),
    STR("lods", 0xac, "rep", "repne(f2)"),
    STR("cmps", 0xa6, "repe", "repne"),
    STR("scas", 0xae, "repe", "repne"),

    /* ---- branches: RIP, and the stack for CALL ---- */
    {.name = "jcc rel8",
     .group = G_BRANCH,
     OP1(0x70),
     .sizes = SZ64,
     .imm = I_REL8,
     .flags = X_CC | X_D64},
    {.name = "jcc rel32",
     .group = G_BRANCH,
     OP2(0x0f, 0x80),
     .sizes = SZ64,
     .imm = I_REL32,
     .flags = X_CC | X_D64},
    {.name = "jmp rel8",
     .group = G_BRANCH,
     OP1(0xeb),
     .sizes = SZ64,
     .imm = I_REL8,
     .flags = X_D64},
    {.name = "jmp rel32",
     .group = G_BRANCH,
     OP1(0xe9),
     .sizes = SZ64,
     .imm = I_REL32,
     .flags = X_D64},
    {.name = "jmp r/m64",
     .group = G_BRANCH,
     OP1(0xff),
     DIG(4),
     .sizes = SZ64,
     .rm = RM_BOTH,
     .setup = ST_BRANCH_IND,
     .flags = X_D64},
    {.name = "call rel32",
     .group = G_BRANCH,
     OP1(0xe8),
     .sizes = SZ64,
     .imm = I_REL32,
     .flags = X_D64},
    {.name = "call r/m64",
     .group = G_BRANCH,
     OP1(0xff),
     DIG(2),
     .sizes = SZ64,
     .rm = RM_BOTH,
     .setup = ST_BRANCH_IND,
     .flags = X_D64},
    {.name = "ret", .group = G_BRANCH, OP1(0xc3), .sizes = SZ64, .setup = ST_RET, .flags = X_D64},
    {.name = "ret imm16",
     .group = G_BRANCH,
     OP1(0xc2),
     .sizes = SZ64,
     .imm = I_16,
     .setup = ST_RET,
     .flags = X_D64},
    {.name = "jrcxz rel8",
     .group = G_BRANCH,
     OP1(0xe3),
     .sizes = SZ64,
     .imm = I_REL8,
     .setup = ST_RCX_SMALL,
     .flags = X_D64},
    {.name = "loop rel8",
     .group = G_BRANCH,
     OP1(0xe2),
     .sizes = SZ64,
     .imm = I_REL8,
     .setup = ST_RCX_SMALL,
     .flags = X_D64},
    {.name = "loope rel8",
     .group = G_BRANCH,
     OP1(0xe1),
     .sizes = SZ64,
     .imm = I_REL8,
     .setup = ST_RCX_SMALL,
     .flags = X_D64},
    {.name = "loopne rel8",
     .group = G_BRANCH,
     OP1(0xe0),
     .sizes = SZ64,
     .imm = I_REL8,
     .setup = ST_RCX_SMALL,
     .flags = X_D64},

    /* ---- stack ---- */
    {.name = "push r (50+r)",
     .group = G_STACK,
     OP1(0x50),
     .sizes = SZ16 | SZ64,
     .flags = X_PLUSR | X_D64},
    {.name = "pop r (58+r)",
     .group = G_STACK,
     OP1(0x58),
     .sizes = SZ16 | SZ64,
     .flags = X_PLUSR | X_D64},
    {.name = "push r/m",
     .group = G_STACK,
     OP1(0xff),
     DIG(6),
     .sizes = SZ16 | SZ64,
     .rm = RM_BOTH,
     .flags = X_D64},
    {.name = "pop r/m",
     .group = G_STACK,
     OP1(0x8f),
     DIG(0),
     .sizes = SZ16 | SZ64,
     .rm = RM_BOTH,
     .flags = X_D64},
    /* "If the source operand is a memory location that uses RSP as base, the address is computed
     * before RSP is decremented" (PUSH); for POP, "after it increments the stack pointer". */
    {.name = "push [rsp+disp8]",
     .group = G_STACK,
     OP1(0xff),
     DIG(6),
     .sizes = SZ16 | SZ64,
     .rm = RM_MEM,
     .setup = ST_RSP_BASE,
     .flags = X_D64 | X_NOSEG},
    {.name = "pop [rsp+disp8]",
     .group = G_STACK,
     OP1(0x8f),
     DIG(0),
     .sizes = SZ16 | SZ64,
     .rm = RM_MEM,
     .setup = ST_RSP_BASE,
     .flags = X_D64 | X_NOSEG},
    {.name = "push imm8",
     .group = G_STACK,
     OP1(0x6a),
     .sizes = SZ16 | SZ64,
     .imm = I_8,
     .flags = X_D64},
    {.name = "push immz",
     .group = G_STACK,
     OP1(0x68),
     .sizes = SZ16 | SZ64,
     .imm = I_Z,
     .flags = X_D64},
    {.name = "leave",
     .group = G_STACK,
     OP1(0xc9),
     .sizes = SZ16 | SZ64,
     .setup = ST_LEAVE,
     .flags = X_D64},
    {.name = "enter imm16, imm8",
     .group = G_STACK,
     OP1(0xc8),
     .sizes = SZ16 | SZ64,
     .imm = I_ENTER,
     .setup = ST_ENTER,
     .flags = X_D64},
    {.name = "pushf", .group = G_STACK, OP1(0x9c), .sizes = SZ16 | SZ64, .flags = X_D64},
    {.name = "popf",
     .group = G_STACK,
     OP1(0x9d),
     .sizes = SZ16 | SZ64,
     .setup = ST_POPF,
     .flags = X_D64},

    /* ---- flags and no-ops ---- */
    {.name = "lahf", .group = G_MISC, OP1(0x9f), .sizes = SZ32, .need = N_LAHF},
    {.name = "sahf", .group = G_MISC, OP1(0x9e), .sizes = SZ32, .need = N_LAHF},
    {.name = "clc", .group = G_MISC, OP1(0xf8), .sizes = SZ32},
    {.name = "stc", .group = G_MISC, OP1(0xf9), .sizes = SZ32},
    {.name = "cmc", .group = G_MISC, OP1(0xf5), .sizes = SZ32},
    {.name = "cld", .group = G_MISC, OP1(0xfc), .sizes = SZ32},
    {.name = "std", .group = G_MISC, OP1(0xfd), .sizes = SZ32},
    {.name = "nop", .group = G_MISC, OP1(0x90), .sizes = SZ16 | SZ32},
    {.name = "pause", .group = G_MISC, .pfx = 0xf3, OP1(0x90), .sizes = SZ32},
    {.name = "nop r/m", .group = G_MISC, OP2(0x0f, 0x1f), DIG(0), .sizes = SZV, .rm = RM_BOTH},
};

const size_t oracle_nforms = sizeof(oracle_forms) / sizeof(oracle_forms[0]);

const char *const oracle_group_names[G_NGROUPS] = {
    [G_MOV] = "mov",       [G_ALU] = "alu",     [G_MULDIV] = "muldiv",
    [G_SHIFT] = "shift",   [G_BIT] = "bit",     [G_STRING] = "string",
    [G_BRANCH] = "branch", [G_STACK] = "stack", [G_MISC] = "misc",
};
