/* oracle_forms.h: the instruction forms the Unicorn differential test (test_oracle.c) runs. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Operand sizes a row is expanded to (each one a separate form). */
enum { SZ8 = 1, SZ16 = 2, SZ32 = 4, SZ64 = 8, SZV = SZ16 | SZ32 | SZ64 };

/* What the ModRM byte holds. */
enum oracle_modrm {
    MR_NONE,  /* no ModRM */
    MR_REG,   /* reg field is a register operand */
    MR_DIGIT, /* reg field is the opcode extension .digit */
};

/* Kinds of r/m operand a row is expanded to (each one a separate form). */
enum { RM_REG = 1, RM_MEM = 2, RM_BOTH = 3 };

enum oracle_imm {
    I_NONE,
    I_8,     /* imm8 */
    I_Z,     /* imm16 with a 16-bit operand, else imm32 (sign-extended to 64) */
    I_16,    /* imm16 */
    I_V,     /* immediate of the operand size (MOV r64, imm64) */
    I_REL8,  /* rel8 */
    I_REL32, /* rel32 */
    I_MOFFS, /* 8-byte absolute address (4 with 67h) */
    I_ENTER, /* imm16, imm8 */
};

/* Undefined flags or results that depend on the inputs (see undefined() in test_oracle.c). */
enum oracle_rule {
    U_NONE,
    U_SHL,     /* SHL/SHR/SAL: AF if count != 0, OF if count > 1, CF if count >= width */
    U_SAR,     /* SAR: AF if count != 0, OF if count > 1 */
    U_ROT,     /* ROL/ROR/RCL/RCR: OF if masked count > 1 */
    U_SHXD,    /* SHLD/SHRD: AF if count != 0, OF if count > 1 */
    U_BSF,     /* BSF/BSR: destination undefined when the source is 0 */
    U_BSWAP16, /* BSWAP r16: destination undefined */
};

/* Input set-up beyond random registers, flags and memory. */
enum oracle_setup {
    ST_NONE,
    ST_COUNT1,     /* shift/rotate by 1 */
    ST_SHIFT_CL,   /* biased count in CL */
    ST_SHIFT_IMM,  /* biased count in imm8 */
    ST_DIV,        /* unsigned divide: divisor mostly nonzero, quotient mostly fits */
    ST_IDIV,       /* signed divide: dividend mostly sign-extended */
    ST_STR,        /* RSI/RDI in data, RCX small, equal runs for CMPS/SCAS */
    ST_CMPXCHG,    /* accumulator equal to the destination half the time */
    ST_CX8,        /* EDX:EAX equal to m64 half the time */
    ST_CX16,       /* RDX:RAX equal to m128 half the time; m128 mostly 16-aligned */
    ST_BT_REG,     /* bit offset register small enough for a memory operand */
    ST_BRANCH_IND, /* r/m holds a target inside the code region */
    ST_RET,        /* the stack top holds a target inside the code region */
    ST_LEAVE,      /* RBP inside the stack page */
    ST_ENTER,      /* RBP inside the stack page, small frame and level */
    ST_XLAT,       /* RBX inside the data pages */
    ST_POPF,       /* the stack top holds a flags image (TF clear) */
    ST_RCX_SMALL,  /* RCX/ECX often 0 or 1 (LOOP, JRCXZ) */
    ST_RSP_BASE,   /* the memory operand is [rsp + disp8] */
};

enum {
    X_LOCK = 1 << 0,  /* LOCK allowed with a memory destination */
    X_D64 = 1 << 1,   /* default 64-bit operand size (no 32-bit form) */
    X_CC = 1 << 2,    /* low nibble of the last opcode byte is a random condition code */
    X_STR = 1 << 3,   /* string instruction: REP forms run to completion in both engines */
    X_RM8 = 1 << 4,   /* the r/m operand is 8 bits whatever the operand size */
    X_RM16 = 1 << 5,  /* the r/m operand is 16 bits whatever the operand size */
    X_PLUSR = 1 << 6, /* register in the low 3 bits of the last opcode byte (REX.B extends) */
    X_NOSEG = 1 << 7, /* no segment override (an override would change nothing tested) */
};

enum oracle_group {
    G_MOV,
    G_ALU,
    G_MULDIV,
    G_SHIFT,
    G_BIT,
    G_STRING,
    G_BRANCH,
    G_STACK,
    G_MISC,
    G_NGROUPS
};

/* CPUID features a row needs (in both engines). */
enum oracle_need { N_NONE, N_POPCNT, N_MOVBE, N_LZCNT, N_BMI1, N_LAHF, N_CX16 };

struct oracle_form {
    const char *name;
    uint8_t group; /* enum oracle_group */
    uint8_t pfx;   /* mandatory/REP prefix F2/F3, or 0 */
    uint8_t nop;   /* opcode bytes */
    uint8_t op[3];
    uint8_t modrm;  /* enum oracle_modrm */
    uint8_t digit;  /* MR_DIGIT: reg field */
    uint8_t sizes;  /* SZ* */
    uint8_t rm;     /* RM_* (MR_NONE rows: ignored) */
    uint8_t imm;    /* enum oracle_imm */
    uint16_t undef; /* flags the SDM always leaves undefined for this row */
    uint8_t rule;   /* enum oracle_rule */
    uint8_t setup;  /* enum oracle_setup */
    uint16_t flags; /* F_* */
    uint8_t need;   /* enum oracle_need */
};

extern const struct oracle_form oracle_forms[];
extern const size_t oracle_nforms;
extern const char *const oracle_group_names[G_NGROUPS];
