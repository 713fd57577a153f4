/* test_exec.c: the interpreter (decode, exec, lazy flags, exceptions, LOCK) on small 64-bit
 * snippets over real guest RAM, identity-mapped long mode and the real MMU/delivery code. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/emu/cpu.h"
#include "emu_test.h"
#include "core/mem.h"

/* Guest-physical layout (identity-mapped with 2 MiB pages over [0, 4 MiB); above is unmapped). */
#define RAM_SIZE  (8ULL << 20)
#define PML4      0x1000ULL
#define GDT_BASE  0x4000ULL
#define IDT_BASE  0x5000ULL
#define TSS_BASE  0x6000ULL
#define EXC_BASE  0x7000ULL /* vector v's handler (a HLT) at EXC_BASE + 16 * v */
#define IST_TOP   0x9f000ULL
#define STACK_TOP 0x90000ULL
#define CODE      0x100000ULL
#define DATA      0x200000ULL
#define MAP_END   0x400000ULL

/* Snippets, assembled with GNU as (intel syntax) when the test was written. */
/* mov eax, 0x7fffffff; add eax, 1; hlt */
static const uint8_t c_add_of[] = {0xb8, 0xff, 0xff, 0xff, 0x7f, 0x83, 0xc0, 0x01, 0xf4};
/* stc; mov al, 0xff; inc al; hlt */
static const uint8_t c_inc_cf[] = {0xf9, 0xb0, 0xff, 0xfe, 0xc0, 0xf4};
/* mov eax, 5; neg eax; hlt */
static const uint8_t c_neg[] = {0xb8, 0x05, 0x00, 0x00, 0x00, 0xf7, 0xd8, 0xf4};
/* mov eax, 0x80000000; shl eax, 1; hlt */
static const uint8_t c_shl1[] = {0xb8, 0x00, 0x00, 0x00, 0x80, 0xd1, 0xe0, 0xf4};
/* mov ebx, 3; mov eax, 0x80000000; mul ebx; hlt */
static const uint8_t c_mul[] = {0xbb, 0x03, 0x00, 0x00, 0x00, 0xb8, 0x00,
                                0x00, 0x00, 0x80, 0xf7, 0xe3, 0xf4};
/* xor eax, eax; sub eax, 1; hlt */
static const uint8_t c_sub1[] = {0x31, 0xc0, 0x83, 0xe8, 0x01, 0xf4};
/* mov al, 0x80; sub al, 1; hlt */
static const uint8_t c_sub8[] = {0xb0, 0x80, 0x2c, 0x01, 0xf4};
/* stc; mov eax, 0xffffffff; adc eax, 0; hlt */
static const uint8_t c_adc[] = {0xf9, 0xb8, 0xff, 0xff, 0xff, 0xff, 0x83, 0xd0, 0x00, 0xf4};
/* mov eax, 1; bt eax, 0; hlt */
static const uint8_t c_bt[] = {0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xba, 0xe0, 0x00, 0xf4};
/* mov eax, 0x10; bsf ecx, eax; hlt */
static const uint8_t c_bsf[] = {0xb8, 0x10, 0x00, 0x00, 0x00, 0x0f, 0xbc, 0xc8, 0xf4};
/* mov al, 0x81; rol al, 1; hlt */
static const uint8_t c_rol[] = {0xb0, 0x81, 0xd0, 0xc0, 0xf4};
/* stc; mov eax, 0; sbb eax, 0; hlt */
static const uint8_t c_sbb[] = {0xf9, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x83, 0xd8, 0x00, 0xf4};
/* mov eax, -5; cmp eax, 3; setl bl; setb cl; seta dl; hlt */
static const uint8_t c_cmp_jl[] = {0xb8, 0xfb, 0xff, 0xff, 0xff, 0x83, 0xf8, 0x03, 0x0f,
                                   0x9c, 0xc3, 0x0f, 0x92, 0xc1, 0x0f, 0x97, 0xc2, 0xf4};
/* mov eax, 0x7f; add al, 1; pushfq; pop rbx; hlt */
static const uint8_t c_pushf[] = {0xb8, 0x7f, 0x00, 0x00, 0x00, 0x04, 0x01, 0x9c, 0x5b, 0xf4};
/* mov rsp, 0x90000; push 0x1234; call f; pop rbx; hlt; f: mov rax, [rsp+8]; ret */
static const uint8_t c_call[] = {0x48, 0xc7, 0xc4, 0x00, 0x00, 0x09, 0x00, 0x68, 0x34,
                                 0x12, 0x00, 0x00, 0xe8, 0x02, 0x00, 0x00, 0x00, 0x5b,
                                 0xf4, 0x48, 0x8b, 0x44, 0x24, 0x08, 0xc3};
/* mov rsp, 0x90000; mov rbp, 0x5555; enter 0x20, 0; mov rcx, rsp; mov rdx, rbp; leave; hlt */
static const uint8_t c_enterleave[] = {0x48, 0xc7, 0xc4, 0x00, 0x00, 0x09, 0x00, 0x48, 0xc7,
                                       0xc5, 0x55, 0x55, 0x00, 0x00, 0xc8, 0x20, 0x00, 0x00,
                                       0x48, 0x89, 0xe1, 0x48, 0x89, 0xea, 0xc9, 0xf4};
/* mov rdi, 0x200000; mov ecx, 100; mov al, 0xab; cld; rep stosb; mov rsi, 0x200000; mov rdi,
 * 0x201000; mov ecx, 12; rep movsq; hlt */
static const uint8_t c_stos[] = {0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0xb9, 0x64, 0x00,
                                 0x00, 0x00, 0xb0, 0xab, 0xfc, 0xf3, 0xaa, 0x48, 0xc7, 0xc6,
                                 0x00, 0x00, 0x20, 0x00, 0x48, 0xc7, 0xc7, 0x00, 0x10, 0x20,
                                 0x00, 0xb9, 0x0c, 0x00, 0x00, 0x00, 0xf3, 0x48, 0xa5, 0xf4};
/* mov rdi, 0x20000c; mov ecx, 4; mov eax, 0x11223344; std; rep stosd; cld; hlt */
static const uint8_t c_stosd_back[] = {0x48, 0xc7, 0xc7, 0x0c, 0x00, 0x20, 0x00, 0xb9,
                                       0x04, 0x00, 0x00, 0x00, 0xb8, 0x44, 0x33, 0x22,
                                       0x11, 0xfd, 0xf3, 0xab, 0xfc, 0xf4};
/* mov rdi, 0x3ffffc; mov rsi, 0x200000; mov ecx, 16; rep movsb; hlt */
static const uint8_t c_repfault[] = {0x48, 0xc7, 0xc7, 0xfc, 0xff, 0x3f, 0x00, 0x48,
                                     0xc7, 0xc6, 0x00, 0x00, 0x20, 0x00, 0xb9, 0x10,
                                     0x00, 0x00, 0x00, 0xf3, 0xa4, 0xf4};
/* xor edx, edx; mov eax, 10; xor ecx, ecx; div ecx; hlt */
static const uint8_t c_de[] = {0x31, 0xd2, 0xb8, 0x0a, 0x00, 0x00,
                               0x00, 0x31, 0xc9, 0xf7, 0xf1, 0xf4};
/* mov rbx, 0x200000; mov qword ptr [rbx], 7; mov eax, 7; mov ecx, 9; lock cmpxchg [rbx], ecx; setz
 * dl; mov eax, 1; lock cmpxchg [rbx], ecx; setz dh; hlt */
static const uint8_t c_cmpxchg[] = {
    0x48, 0xc7, 0xc3, 0x00, 0x00, 0x20, 0x00, 0x48, 0xc7, 0x03, 0x07, 0x00, 0x00, 0x00, 0xb8,
    0x07, 0x00, 0x00, 0x00, 0xb9, 0x09, 0x00, 0x00, 0x00, 0xf0, 0x0f, 0xb1, 0x0b, 0x0f, 0x94,
    0xc2, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xf0, 0x0f, 0xb1, 0x0b, 0x0f, 0x94, 0xc6, 0xf4};
/* mov rdi, 0x200000; mov rax, 1; mov rdx, 2; mov qword ptr [rdi], rax; mov qword ptr [rdi+8], rdx;
 * mov rbx, 3; mov rcx, 4; lock cmpxchg16b [rdi]; setz r8b; lock cmpxchg16b [rdi]; setz r9b; hlt */
static const uint8_t c_cmpxchg16b[] = {
    0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0x48, 0xc7, 0xc0, 0x01, 0x00, 0x00, 0x00, 0x48, 0xc7,
    0xc2, 0x02, 0x00, 0x00, 0x00, 0x48, 0x89, 0x07, 0x48, 0x89, 0x57, 0x08, 0x48, 0xc7, 0xc3, 0x03,
    0x00, 0x00, 0x00, 0x48, 0xc7, 0xc1, 0x04, 0x00, 0x00, 0x00, 0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0x41,
    0x0f, 0x94, 0xc0, 0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0x41, 0x0f, 0x94, 0xc1, 0xf4};
/* mov eax, 0x1234; mov bl, ah; add ah, 1; mov sil, 5; hlt */
static const uint8_t c_highbyte[] = {0xb8, 0x34, 0x12, 0x00, 0x00, 0x88, 0xe3,
                                     0x80, 0xc4, 0x01, 0x40, 0xb6, 0x05, 0xf4};
/* mov rax, -1; mov ax, 0x1234; mov rcx, -1; mov ecx, 0x1234; mov rdx, -1; movsxd rdx, eax; movzx
 * esi, ax; movsx rdi, cl; hlt */
static const uint8_t c_sizes[] = {0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0x66, 0xb8, 0x34, 0x12,
                                  0x48, 0xc7, 0xc1, 0xff, 0xff, 0xff, 0xff, 0xb9, 0x34, 0x12, 0x00,
                                  0x00, 0x48, 0xc7, 0xc2, 0xff, 0xff, 0xff, 0xff, 0x48, 0x63, 0xd0,
                                  0x0f, 0xb7, 0xf0, 0x48, 0x0f, 0xbe, 0xf9, 0xf4};
/* mov rbx, 0x100000000; mov rcx, 2; lea rax, [rbx+rcx*4+8]; lea edx, [rbx+rcx*4+8]; lea esi,
 * [ebx+ecx*8-1]; hlt */
static const uint8_t c_lea[] = {0x48, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x48,
                                0xc7, 0xc1, 0x02, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x44, 0x8b, 0x08,
                                0x8d, 0x54, 0x8b, 0x08, 0x67, 0x8d, 0x74, 0xcb, 0xff, 0xf4};
/* mov rax, -1; mov ecx, 5; cmp ecx, 5; cmovne eax, ecx; mov rdx, -1; cmove edx, ecx; hlt */
static const uint8_t c_cmov[] = {0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0xb9, 0x05, 0x00,
                                 0x00, 0x00, 0x83, 0xf9, 0x05, 0x0f, 0x45, 0xc1, 0x48, 0xc7,
                                 0xc2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x44, 0xd1, 0xf4};
/* ud2 */
static const uint8_t c_ud2[] = {0x0f, 0x0b};
/* fld1; hlt */
static const uint8_t c_x87[] = {0xd9, 0xe8, 0xf4};
/* xor eax, eax; mov ecx, 10; 1: add eax, ecx; loop 1b; hlt */
static const uint8_t c_loop[] = {0x31, 0xc0, 0xb9, 0x0a, 0x00, 0x00,
                                 0x00, 0x01, 0xc8, 0xe2, 0xfc, 0xf4};
/* mov rax, -7; cqo; mov rcx, 2; idiv rcx; mov r8, rax; mov r9, rdx; mov rax, 0x123456789; mov rcx,
 * 0x10000; mul rcx; mov r10, rax; mov r11, rdx; imul r12, r10, -3; hlt */
static const uint8_t c_muldiv[] = {
    0x48, 0xc7, 0xc0, 0xf9, 0xff, 0xff, 0xff, 0x48, 0x99, 0x48, 0xc7, 0xc1, 0x02, 0x00,
    0x00, 0x00, 0x48, 0xf7, 0xf9, 0x49, 0x89, 0xc0, 0x49, 0x89, 0xd1, 0x48, 0xb8, 0x89,
    0x67, 0x45, 0x23, 0x01, 0x00, 0x00, 0x00, 0x48, 0xc7, 0xc1, 0x00, 0x00, 0x01, 0x00,
    0x48, 0xf7, 0xe1, 0x49, 0x89, 0xc2, 0x49, 0x89, 0xd3, 0x4d, 0x6b, 0xe2, 0xfd, 0xf4};
/* mov eax, 0xf0; mov cl, 4; shr eax, cl; mov ebx, -16; sar ebx, 2; mov rdx, 1; shl rdx, 63; mov
 * esi, 0x12345678; ror esi, 8; stc; mov edi, 1; rcr edi, 1; hlt */
static const uint8_t c_shifts[] = {
    0xb8, 0xf0, 0x00, 0x00, 0x00, 0xb1, 0x04, 0xd3, 0xe8, 0xbb, 0xf0, 0xff, 0xff, 0xff, 0xc1,
    0xfb, 0x02, 0x48, 0xc7, 0xc2, 0x01, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xe2, 0x3f, 0xbe, 0x78,
    0x56, 0x34, 0x12, 0xc1, 0xce, 0x08, 0xf9, 0xbf, 0x01, 0x00, 0x00, 0x00, 0xd1, 0xdf, 0xf4};
/* 1: jmp 1b */
static const uint8_t c_jmp_budget[] = {0xeb, 0xfe};
/* mov rsp, 0x90000; mov eax, 0xabcd; push ax; pop bx; push fs; pop rcx; hlt */
static const uint8_t c_pushpop16[] = {0x48, 0xc7, 0xc4, 0x00, 0x00, 0x09, 0x00, 0xb8, 0xcd, 0xab,
                                      0x00, 0x00, 0x66, 0x50, 0x66, 0x5b, 0x0f, 0xa0, 0x59, 0xf4};
/* mov eax, 0x11223344; bswap eax; mov rdx, 0x0102030405060708; bswap rdx; hlt */
static const uint8_t c_bswap[] = {0xb8, 0x44, 0x33, 0x22, 0x11, 0x0f, 0xc8, 0x48, 0xba, 0x08, 0x07,
                                  0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x48, 0x0f, 0xca, 0xf4};
/* mov rbx, 0x200000; mov dword ptr [rbx], 0x44332211; mov eax, 2; xlatb; mov rdi, 0x200000; mov
 * ecx, 4; mov al, 0x33; repne scasb; hlt */
static const uint8_t c_xlat_str[] = {0x48, 0xc7, 0xc3, 0x00, 0x00, 0x20, 0x00, 0xc7, 0x03,
                                     0x11, 0x22, 0x33, 0x44, 0xb8, 0x02, 0x00, 0x00, 0x00,
                                     0xd7, 0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0xb9,
                                     0x04, 0x00, 0x00, 0x00, 0xb0, 0x33, 0xf2, 0xae, 0xf4};
/* mov rdi, 0x200ff8; mov ecx, 1000; mov rax, 0x1122334455667788; rep stosq; mov rsi, 0x200000;
 * mov byte ptr [rsi], 0x5a; lea rdi, [rsi+1]; mov ecx, 5000; rep movsb; hlt */
static const uint8_t c_repbig[] = {
    0x48, 0xc7, 0xc7, 0xf8, 0x0f, 0x20, 0x00, 0xb9, 0xe8, 0x03, 0x00, 0x00, 0x48, 0xb8, 0x88, 0x77,
    0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xf3, 0x48, 0xab, 0x48, 0xc7, 0xc6, 0x00, 0x00, 0x20, 0x00,
    0xc6, 0x06, 0x5a, 0x48, 0x8d, 0x7e, 0x01, 0xb9, 0x88, 0x13, 0x00, 0x00, 0xf3, 0xa4, 0xf4};
/* mov dword ptr [rip + target], 0x12345678; shld word ptr [rip + target + 4], ax, 4; hlt;
 * target at CODE + 0x100 (the SHLD displacement must count its imm8) */
static const uint8_t c_riprel[] = {0xc7, 0x05, 0xf6, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12,
                                   0x66, 0x0f, 0xa4, 0x05, 0xf1, 0x00, 0x00, 0x00, 0x04, 0xf4};
/* mov rbx, 0x200000; mov ecx, 20000; 1: lock inc qword ptr [rbx]; mov eax, 2;
 * lock xadd [rbx+8], rax; 2: mov rax, [rbx+16]; lea rdx, [rax+3]; lock cmpxchg [rbx+16], rdx;
 * jnz 2b; 3: mov eax, 1; xchg [rbx+24], eax; test eax, eax; jnz 3b; inc qword ptr [rbx+32];
 * mov dword ptr [rbx+24], 0; dec ecx; jnz 1b; hlt */
static const uint8_t c_lockloop[] = {
    0x48, 0xc7, 0xc3, 0x00, 0x00, 0x20, 0x00, 0xb9, 0x20, 0x4e, 0x00, 0x00, 0xf0, 0x48, 0xff,
    0x03, 0xb8, 0x02, 0x00, 0x00, 0x00, 0xf0, 0x48, 0x0f, 0xc1, 0x43, 0x08, 0x48, 0x8b, 0x43,
    0x10, 0x48, 0x8d, 0x50, 0x03, 0xf0, 0x48, 0x0f, 0xb1, 0x53, 0x10, 0x75, 0xf0, 0xb8, 0x01,
    0x00, 0x00, 0x00, 0x87, 0x43, 0x18, 0x85, 0xc0, 0x75, 0xf4, 0x48, 0xff, 0x43, 0x20, 0xc7,
    0x43, 0x18, 0x00, 0x00, 0x00, 0x00, 0xff, 0xc9, 0x75, 0xc6, 0xf4};
/* mov rbx, 0x200000; mov qword ptr [rbx], 0; mov qword ptr [rbx+8], 0; mov eax, 65;
 * bts [rbx], rax; mov eax, 33; bt dword ptr [rbx+4], eax; setc cl; mov eax, -31;
 * bt dword ptr [rbx+12], eax; setc ch; mov eax, 0x80; lzcnt edx, eax; tzcnt esi, eax;
 * popcnt edi, eax; hlt */
static const uint8_t c_bitops[] = {
    0x48, 0xc7, 0xc3, 0x00, 0x00, 0x20, 0x00, 0x48, 0xc7, 0x03, 0x00, 0x00, 0x00, 0x00, 0x48,
    0xc7, 0x43, 0x08, 0x00, 0x00, 0x00, 0x00, 0xb8, 0x41, 0x00, 0x00, 0x00, 0x48, 0x0f, 0xab,
    0x03, 0xb8, 0x21, 0x00, 0x00, 0x00, 0x0f, 0xa3, 0x43, 0x04, 0x0f, 0x92, 0xc1, 0xb8, 0xe1,
    0xff, 0xff, 0xff, 0x0f, 0xa3, 0x43, 0x0c, 0x0f, 0x92, 0xc5, 0xb8, 0x80, 0x00, 0x00, 0x00,
    0xf3, 0x0f, 0xbd, 0xd0, 0xf3, 0x0f, 0xbc, 0xf0, 0xf3, 0x0f, 0xb8, 0xf8, 0xf4};
/* (32-bit code) mov esp, 0x90000; mov eax, 1; mov ebx, 2; pusha; xor eax, eax; xor ebx, ebx;
 * popa; inc eax; dec ebx; push 0x77; pop ecx; hlt */
static const uint8_t c_compat[] = {0xbc, 0x00, 0x00, 0x09, 0x00, 0xb8, 0x01, 0x00, 0x00,
                                   0x00, 0xbb, 0x02, 0x00, 0x00, 0x00, 0x60, 0x31, 0xc0,
                                   0x31, 0xdb, 0x61, 0x40, 0x4b, 0x6a, 0x77, 0x59, 0xf4};

/* The accelerator glue is not part of this test. */
__attribute__((weak)) void emu_cpu_notify(struct emu_cpu *c)
{
    atomic_store(&c->exit_request, true);
}

__attribute__((weak)) uint64_t emu_cpu_time_ns(struct emu_cpu *c)
{
    return c->icount;
}

static struct guest_mem gmem;
static struct emu_vm *vm;
static struct emu_cpu *cpu;

static void put64(uint64_t gpa, uint64_t v)
{
    memcpy(gmem.base + gpa, &v, 8);
}

static uint64_t get64(uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, gmem.base + gpa, 8);
    return v;
}

/* 64-bit mode at CPL 0 with flat segments, the IDT and TSS below, RIP at CODE. */
static void cpu_init(struct emu_cpu *c, int id)
{
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->mem = &gmem;
    c->vm = vm;
    c->cr0 = CR0_PE | CR0_PG | CR0_ET | CR0_NE | CR0_WP;
    c->cr3 = PML4;
    c->cr4 = CR4_PAE;
    c->efer = EFER_LME | EFER_LMA | EFER_SCE;
    c->xcr0 = 1;
    c->seg[S_CS] = (struct kvm_segment){
        .limit = 0xffffffff, .selector = 8, .type = 0xb, .present = 1, .s = 1, .l = 1, .g = 1};
    emu_test_seg_flat(&c->seg[S_SS], 0x10, 3, 0);
    emu_test_seg_flat(&c->seg[S_DS], 0x10, 3, 0);
    emu_test_seg_flat(&c->seg[S_ES], 0x10, 3, 0);
    emu_test_seg_flat(&c->seg[S_FS], 0x10, 3, 0);
    emu_test_seg_flat(&c->seg[S_GS], 0x10, 3, 0);
    c->tr = (struct kvm_segment){
        .base = TSS_BASE, .limit = 0x67, .selector = 0x28, .type = 0xb, .present = 1};
    c->ldt = (struct kvm_segment){.unusable = 1, .type = 2};
    c->gdt = (struct kvm_dtable){.base = GDT_BASE, .limit = 0x37};
    c->idt = (struct kvm_dtable){.base = IDT_BASE, .limit = 32 * 16 - 1};
    c->rip = CODE;
    c->r[R_SP] = STACK_TOP;
    emu_mode_changed(c);
    emu_tlb_flush(c);
    emu_set_rflags(c, 0x2);
}

static int setup(void **state)
{
    (void)state;
    if (gmem_init(&gmem, RAM_SIZE) < 0)
        return -1;
    put64(PML4, 0x2000 | 0x3);
    put64(0x2000, 0x3000 | 0x3);
    put64(0x3000, 0x000000 | 0x83);
    put64(0x3008, 0x200000 | 0x83);
    put64(GDT_BASE + 0x08, 0x00af9a000000ffffULL);
    put64(GDT_BASE + 0x10, 0x00cf92000000ffffULL);
    put64(GDT_BASE + 0x18, 0x00cf9a000000ffffULL); /* 32-bit code */
    put64(GDT_BASE + 0x28, 0x0000890000000067ULL | ((TSS_BASE & 0xffffff) << 16));
    /* Vectors 0-31: interrupt gates on IST 1, each handler a HLT. */
    for (uint64_t v = 0; v < 32; v++) {
        uint64_t h = EXC_BASE + 16 * v;
        put64(IDT_BASE + 16 * v, (h & 0xffff) | (8ULL << 16) | (1ULL << 32) | (0x8eULL << 40) |
                                     ((h >> 16 & 0xffff) << 48));
        put64(IDT_BASE + 16 * v + 8, h >> 32);
        memset(gmem.base + h, 0xf4, 16);
    }
    put64(TSS_BASE + 4, STACK_TOP);
    put64(TSS_BASE + 0x24, IST_TOP);
    vm = calloc(1, sizeof(*vm));
    cpu = calloc(1, sizeof(*cpu));
    if (!vm || !cpu)
        return -1;
    vm->mem = &gmem;
    vm->ncpus = 1;
    vm->cpus[0] = cpu;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(cpu);
    free(vm);
    gmem_destroy(&gmem);
    return 0;
}

/* Fresh CPU, code at CODE, data page cleared; run until HLT (or the budget). */
static enum emu_stop run_at(uint64_t at, const uint8_t *code, size_t len)
{
    enum emu_stop s;

    cpu_init(cpu, 0);
    memset(gmem.base + CODE, 0, 0x1000);
    memset(gmem.base + DATA, 0, 0x4000);
    memcpy(gmem.base + at, code, len);
    cpu->rip = at;
    s = emu_exec(cpu, 1000000);
    return s;
}

static enum emu_stop run(const uint8_t *code, size_t len)
{
    return run_at(CODE, code, len);
}

#define RUN(code) run(code, sizeof(code))

static uint64_t flags(void)
{
    return emu_get_rflags(cpu);
}

/* The CPU stopped in the handler of vector vec (its HLT). */
static void assert_vector(int vec)
{
    assert_int_equal(cpu->stop, EMU_STOP_HLT);
    assert_int_equal(cpu->rip, EXC_BASE + 16 * (uint64_t)vec + 1);
}

/* RIP saved in the exception frame on the IST stack (with or without an error code). */
static uint64_t frame_rip(bool has_err)
{
    return get64(cpu->r[R_SP] + (has_err ? 8 : 0));
}

struct flag_case {
    const char *name;
    const uint8_t *code;
    size_t len;
    int reg;
    uint64_t value;
    uint64_t mask;  /* flags checked */
    uint64_t flags; /* their expected values */
};

#define FC(n, r, v, m, f)                                                                          \
    {                                                                                              \
#n, c_##n, sizeof(c_##n), r, v, m, f                                                       \
    }
#define ARITH (FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF)

static void test_arith_flags(void **state)
{
    static const struct flag_case cases[] = {
        FC(add_of, R_AX, 0x80000000, ARITH, FL_OF | FL_SF | FL_AF | FL_PF),
        FC(inc_cf, R_AX, 0, ARITH, FL_CF | FL_ZF | FL_AF | FL_PF),
        FC(neg, R_AX, 0xfffffffb, ARITH, FL_CF | FL_SF | FL_AF),
        FC(shl1, R_AX, 0, ARITH & ~FL_AF, FL_CF | FL_OF | FL_ZF | FL_PF),
        FC(mul, R_DX, 1, FL_CF | FL_OF, FL_CF | FL_OF),
        FC(sub1, R_AX, 0xffffffff, ARITH, FL_CF | FL_SF | FL_AF | FL_PF),
        FC(sub8, R_AX, 0x7f, ARITH, FL_OF | FL_AF),
        FC(adc, R_AX, 0, ARITH, FL_CF | FL_ZF | FL_AF | FL_PF),
        FC(bt, R_AX, 1, FL_CF, FL_CF),
        FC(bsf, R_CX, 4, FL_ZF, 0),
        FC(rol, R_AX, 3, FL_CF | FL_OF, FL_CF | FL_OF),
        FC(sbb, R_AX, 0xffffffff, ARITH, FL_CF | FL_SF | FL_AF | FL_PF),
        FC(pushf, R_BX, 0x892, 0, 0),
    };
    (void)state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const struct flag_case *t = &cases[k];
        print_message("%s\n", t->name);
        assert_int_equal(run(t->code, t->len), EMU_STOP_HLT);
        assert_int_equal(cpu->rip, CODE + t->len);
        uint64_t v = cpu->r[t->reg];
        if (t->reg == R_AX && t->value <= 0xff && t->code != c_inc_cf)
            v &= 0xffffffff;
        if (t->code == c_inc_cf || t->code == c_sub8 || t->code == c_rol)
            v &= 0xff;
        assert_int_equal(v, t->value);
        assert_int_equal(flags() & t->mask, t->flags);
        assert_true(flags() & 2);
    }
    /* Conditions after CMP: -5 < 3 signed, not below unsigned, above unsigned. */
    assert_int_equal(RUN(c_cmp_jl), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_BX] & 0xff, 1);
    assert_int_equal(cpu->r[R_CX] & 0xff, 0);
    assert_int_equal(cpu->r[R_DX] & 0xff, 1);
}

static void test_registers_and_sizes(void **state)
{
    (void)state;
    assert_int_equal(RUN(c_highbyte), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_BX] & 0xff, 0x12);
    assert_int_equal(cpu->r[R_AX], 0x1334);
    assert_int_equal(cpu->r[R_SI] & 0xff, 5);

    assert_int_equal(RUN(c_sizes), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 0xffffffffffff1234ULL);
    assert_int_equal(cpu->r[R_CX], 0x1234);
    assert_int_equal(cpu->r[R_DX], 0xffffffffffff1234ULL);
    assert_int_equal(cpu->r[R_SI], 0x1234);
    assert_int_equal(cpu->r[R_DI], 0x34);

    assert_int_equal(RUN(c_lea), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 0x100000010ULL);
    assert_int_equal(cpu->r[R_DX], 0x10);
    assert_int_equal(cpu->r[R_SI], 15);

    assert_int_equal(RUN(c_cmov), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 0xffffffff); /* not moved, still zero-extended */
    assert_int_equal(cpu->r[R_DX], 5);

    assert_int_equal(RUN(c_muldiv), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_R8], (uint64_t)-3);
    assert_int_equal(cpu->r[R_R9], (uint64_t)-1);
    assert_int_equal(cpu->r[R_R10], 0x1234567890000ULL);
    assert_int_equal(cpu->r[R_R11], 0);
    assert_int_equal(cpu->r[R_R12], (uint64_t)(-3 * (int64_t)0x1234567890000LL));

    assert_int_equal(RUN(c_shifts), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 0xf);
    assert_int_equal(cpu->r[R_BX], 0xfffffffc);
    assert_int_equal(cpu->r[R_DX], 1ULL << 63);
    assert_int_equal(cpu->r[R_SI], 0x78123456);
    assert_int_equal(cpu->r[R_DI], 0x80000000);
    assert_int_equal(flags() & FL_CF, FL_CF);

    assert_int_equal(RUN(c_bswap), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 0x44332211);
    assert_int_equal(cpu->r[R_DX], 0x0807060504030201ULL);

    assert_int_equal(RUN(c_bitops), EMU_STOP_HLT);
    assert_int_equal(gmem.base[DATA + 8], 2);
    assert_int_equal(cpu->r[R_CX] & 0xffff, 0x0101);
    assert_int_equal(cpu->r[R_DX], 24);
    assert_int_equal(cpu->r[R_SI], 7);
    assert_int_equal(cpu->r[R_DI], 1);

    assert_int_equal(RUN(c_loop), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 55);
    assert_int_equal(cpu->r[R_CX], 0);

    /* RIP-relative operands count the immediate that follows the displacement. */
    cpu_init(cpu, 0);
    memset(gmem.base + CODE, 0, 0x1000);
    memcpy(gmem.base + CODE, c_riprel, sizeof(c_riprel));
    cpu->r[R_AX] = 0xabcd;
    assert_int_equal(emu_exec(cpu, 100), EMU_STOP_HLT);
    assert_int_equal(get64(CODE + 0x100), 0x0000000a12345678ULL);
}

static void test_call_ret_push_pop(void **state)
{
    (void)state;
    assert_int_equal(RUN(c_call), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 0x1234);
    assert_int_equal(cpu->r[R_BX], 0x1234);
    assert_int_equal(cpu->r[R_SP], STACK_TOP);
    assert_int_equal(get64(STACK_TOP - 16), CODE + 17); /* the return address */

    assert_int_equal(RUN(c_enterleave), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_CX], STACK_TOP - 8 - 0x20);
    assert_int_equal(cpu->r[R_DX], STACK_TOP - 8);
    assert_int_equal(cpu->r[R_SP], STACK_TOP);
    assert_int_equal(cpu->r[R_BP], 0x5555);

    assert_int_equal(RUN(c_pushpop16), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_BX] & 0xffff, 0xabcd);
    assert_int_equal(cpu->r[R_CX], 0x10);
    assert_int_equal(cpu->r[R_SP], STACK_TOP);
}

static void test_compat_mode(void **state)
{
    (void)state;
    cpu_init(cpu, 0);
    memcpy(gmem.base + CODE, c_compat, sizeof(c_compat));
    cpu->seg[S_CS] = (struct kvm_segment){
        .limit = 0xffffffff, .selector = 0x18, .type = 0xb, .present = 1, .s = 1, .db = 1, .g = 1};
    emu_mode_changed(cpu);
    assert_int_equal(emu_exec(cpu, 1000), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX], 2);
    assert_int_equal(cpu->r[R_BX], 1);
    assert_int_equal(cpu->r[R_CX], 0x77);
    assert_int_equal(cpu->r[R_SP], STACK_TOP);
}

static void test_string(void **state)
{
    (void)state;
    assert_int_equal(RUN(c_stos), EMU_STOP_HLT);
    for (int k = 0; k < 100; k++)
        assert_int_equal(gmem.base[DATA + k], 0xab);
    assert_int_equal(gmem.base[DATA + 100], 0);
    for (int k = 0; k < 96; k++)
        assert_int_equal(gmem.base[DATA + 0x1000 + k], 0xab);
    assert_int_equal(gmem.base[DATA + 0x1000 + 96], 0);
    assert_int_equal(cpu->r[R_CX], 0);
    assert_int_equal(cpu->r[R_SI], DATA + 96);
    assert_int_equal(cpu->r[R_DI], DATA + 0x1000 + 96);

    assert_int_equal(RUN(c_stosd_back), EMU_STOP_HLT);
    for (int k = 0; k < 4; k++)
        assert_int_equal(get64(DATA + 8 * (uint64_t)(k / 2)) >> (32 * (k % 2)) & 0xffffffff,
                         0x11223344);
    assert_int_equal(cpu->r[R_DI], DATA - 4);
    assert_int_equal(flags() & FL_DF, 0);

    /* Runs across pages (the host-pointer path), and an overlapping forward MOVSB that
     * replicates its first byte as the instruction does. */
    assert_int_equal(RUN(c_repbig), EMU_STOP_HLT);
    for (uint64_t a = DATA; a <= DATA + 5000; a++)
        assert_int_equal(gmem.base[a], 0x5a);
    for (uint64_t a = 0x201390; a <= 0x202f30; a += 8)
        assert_int_equal(get64(a), 0x1122334455667788ULL);
    assert_int_equal(gmem.base[0x202f38], 0);
    assert_int_equal(cpu->r[R_SI], DATA + 5000);
    assert_int_equal(cpu->r[R_DI], DATA + 5001);
    assert_int_equal(cpu->r[R_CX], 0);

    assert_int_equal(RUN(c_xlat_str), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_DI], DATA + 3);
    assert_int_equal(cpu->r[R_CX], 1);
    assert_int_equal(cpu->r[R_AX] & 0xff, 0x33);
    assert_int_equal(flags() & FL_ZF, FL_ZF);
}

/* A REP MOVS that runs into an unmapped page: #PF with the registers of the completed
 * iterations committed and the saved RIP at the instruction. */
static void test_rep_fault(void **state)
{
    (void)state;
    memset(gmem.base + DATA, 0x5a, 16);
    cpu_init(cpu, 0);
    memcpy(gmem.base + CODE, c_repfault, sizeof(c_repfault));
    memset(gmem.base + DATA, 0x5a, 16);
    assert_int_equal(emu_exec(cpu, 1000), EMU_STOP_HLT);
    assert_vector(EXC_PF);
    assert_int_equal(cpu->cr2, MAP_END);
    assert_int_equal(cpu->r[R_CX], 12);
    assert_int_equal(cpu->r[R_DI], MAP_END);
    assert_int_equal(cpu->r[R_SI], DATA + 4);
    assert_int_equal(frame_rip(true), CODE + 19);
    assert_int_equal(gmem.base[MAP_END - 1], 0x5a);
}

static void test_divide_error(void **state)
{
    (void)state;
    assert_int_equal(RUN(c_de), EMU_STOP_HLT);
    assert_vector(EXC_DE);
    assert_int_equal(frame_rip(false), CODE + 9);
    assert_int_equal(cpu->r[R_AX], 10);
    assert_int_equal(cpu->r[R_SP], IST_TOP - 40);
}

static void test_ud_and_limits(void **state)
{
    static const uint8_t lock_nop[] = {0xf0, 0x90};
    static const uint8_t lock_reg[] = {0xf0, 0x01, 0xd8}; /* lock add eax, ebx */
    static uint8_t too_long[16];
    (void)state;

    assert_int_equal(RUN(c_ud2), EMU_STOP_HLT);
    assert_vector(EXC_UD);
    assert_int_equal(frame_rip(false), CODE);

    assert_int_equal(RUN(c_x87), EMU_STOP_HLT); /* not implemented: #UD (and a log line) */
    assert_vector(EXC_UD);

    assert_int_equal(RUN(lock_nop), EMU_STOP_HLT);
    assert_vector(EXC_UD);
    assert_int_equal(RUN(lock_reg), EMU_STOP_HLT);
    assert_vector(EXC_UD);

    memset(too_long, 0x66, 15);
    too_long[15] = 0x90;
    assert_int_equal(RUN(too_long), EMU_STOP_HLT);
    assert_vector(EXC_GP);
    too_long[14] = 0x90; /* 14 prefixes + NOP: 15 bytes is fine */
    too_long[15] = 0xf4;
    assert_int_equal(RUN(too_long), EMU_STOP_HLT);
    assert_int_equal(cpu->rip, CODE + 16);
}

/* Instruction fetch across the end of the mapping: only bytes the instruction has fault. */
static void test_fetch_page_end(void **state)
{
    static const uint8_t nop_hlt[] = {0x90, 0xf4};
    static const uint8_t mov_imm[] = {0xb8, 0x01};
    (void)state;

    assert_int_equal(run_at(MAP_END - 2, nop_hlt, sizeof(nop_hlt)), EMU_STOP_HLT);
    assert_int_equal(cpu->rip, MAP_END);

    assert_int_equal(run_at(MAP_END - 2, mov_imm, sizeof(mov_imm)), EMU_STOP_HLT);
    assert_vector(EXC_PF);
    assert_int_equal(cpu->cr2, MAP_END);
    assert_int_equal(frame_rip(true), MAP_END - 2);
    assert_int_equal(get64(cpu->r[R_SP]) & PF_P, 0); /* not present (no PF_I without NXE) */
}

static void test_stops(void **state)
{
    uint64_t ic;
    (void)state;

    cpu_init(cpu, 0);
    memcpy(gmem.base + CODE, c_jmp_budget, sizeof(c_jmp_budget));
    ic = cpu->icount;
    assert_int_equal(emu_exec(cpu, 1000), EMU_STOP_BUDGET);
    assert_int_equal(cpu->icount - ic, 1000);
    assert_int_equal(cpu->rip, CODE);

    atomic_store(&cpu->exit_request, true);
    assert_int_equal(emu_exec(cpu, 1000), EMU_STOP_REQUEST);
    assert_int_equal(cpu->icount - ic, 1000);
    assert_int_equal(cpu->rip, CODE);
    atomic_store(&cpu->exit_request, false);
}

static void test_locked_cmpxchg(void **state)
{
    (void)state;
    assert_int_equal(RUN(c_cmpxchg), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_DX] & 0xffff, 0x0001); /* dl = 1 (equal), dh = 0 (not) */
    assert_int_equal(get64(DATA), 9);
    assert_int_equal(cpu->r[R_AX], 9);

    assert_int_equal(RUN(c_cmpxchg16b), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_R8] & 0xff, 1);
    assert_int_equal(cpu->r[R_R9] & 0xff, 0);
    assert_int_equal(get64(DATA), 3);
    assert_int_equal(get64(DATA + 8), 4);
    assert_int_equal(cpu->r[R_AX], 3);
    assert_int_equal(cpu->r[R_DX], 4);
}

static void *lock_thread(void *arg)
{
    struct emu_cpu *c = arg;
    while (emu_exec(c, 100000) != EMU_STOP_HLT)
        ;
    return NULL;
}

/* Two vCPUs hammering the same words with LOCK INC, LOCK XADD, a LOCK CMPXCHG loop and an XCHG
 * spinlock: the totals are exact. */
static void test_lock_two_cpus(void **state)
{
    struct emu_cpu *c2 = calloc(1, sizeof(*c2));
    pthread_t t1, t2;
    (void)state;

    assert_non_null(c2);
    cpu_init(cpu, 0);
    cpu_init(c2, 1);
    vm->ncpus = 2;
    vm->cpus[1] = c2;
    memset(gmem.base + DATA, 0, 64);
    memcpy(gmem.base + CODE, c_lockloop, sizeof(c_lockloop));
    assert_int_equal(pthread_create(&t1, NULL, lock_thread, cpu), 0);
    assert_int_equal(pthread_create(&t2, NULL, lock_thread, c2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(get64(DATA), 40000);
    assert_int_equal(get64(DATA + 8), 80000);
    assert_int_equal(get64(DATA + 16), 120000);
    assert_int_equal(get64(DATA + 32), 40000);
    vm->ncpus = 1;
    vm->cpus[1] = NULL;
    free(c2);
}

static void test_reset(void **state)
{
    (void)state;
    cpu_init(cpu, 0);
    emu_cpu_reset(cpu);
    assert_int_equal(cpu->rip, 0xfff0);
    assert_int_equal(cpu->seg[S_CS].selector, 0xf000);
    assert_int_equal(cpu->seg[S_CS].base, 0xffff0000);
    assert_int_equal(cpu->cr0, 0x60000010);
    assert_int_equal(cpu->r[R_DX], 0x600);
    assert_int_equal(emu_get_rflags(cpu), 2);
    assert_int_equal(cpu->code64, 0);
    assert_int_equal(cpu->code32, 0);
}

/* Self-modifying code inside one decoded block: the store is seen by the next instruction. */
static void test_smc(void **state)
{
    (void)state;
    /* mov byte [rip+1], 0x22 ; mov al, 0x11 ; hlt */
    static const uint8_t c1[] = {0xc6, 0x05, 0x01, 0, 0, 0, 0x22, 0xb0, 0x11, 0xf4};
    assert_int_equal(RUN(c1), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_AX] & 0xff, 0x22);
    /* loop: lea rbx,[rip+k] patch; several iterations: mov rcx,3; L: mov byte [rbx], cl; mov al, 0;
     * add dl, al; dec rcx; jnz L; hlt */
    static const uint8_t c2[] = {0x48, 0x8d, 0x1d, 0x0c, 0,
                                 0,    0, /* lea rbx, [rip+12] -> imm of mov al (at 7+...)*/
                                 0xb9, 0x03, 0,    0,    0, /* mov ecx, 3 (offset 7) */
                                 0x88, 0x0b,                /* L (12): mov [rbx], cl */
                                 0x90,                      /* 14 nop */
                                 0x90,                      /* 15 nop */
                                 0x90,                      /* 16 nop */
                                 0x90,                      /* 17 nop */
                                 0xb0, 0x00,                /* 18: mov al, imm (imm at 19) */
                                 0x00, 0xc2,                /* 20: add dl, al */
                                 0xff, 0xc9,                /* 22: dec ecx */
                                 0x75, 0xf2,                /* 24: jnz 12 (26-14) */
                                 0xf4};
    assert_int_equal(RUN(c2), EMU_STOP_HLT);
    assert_int_equal(cpu->r[R_DX] & 0xff, 6);
    /* the same with a 1-instruction budget each time */
    cpu_init(cpu, 0);
    memset(gmem.base + CODE, 0, 0x1000);
    memcpy(gmem.base + CODE, c2, sizeof(c2));
    for (int k = 0; k < 100 && cpu->stop != EMU_STOP_HLT; k++)
        emu_exec(cpu, 1);
    assert_int_equal(cpu->r[R_DX] & 0xff, 6);
}

/* A fault in the middle of a block: exact RIP in the frame and exact instruction count. */
static void test_midfault(void **state)
{
    (void)state;
    /* nop x3; mov eax,1; mov ebx,2; mov ecx,[ebx*1+0x7fff0000] (unmapped: #PF); hlt */
    static const uint8_t c[] = {0x90, 0x90, 0x90, 0xb8, 1,    0,    0,    0,    0xbb, 2,   0,
                                0,    0,    0x8b, 0x0c, 0x1d, 0x00, 0x00, 0xff, 0x7f, 0xf4};
    for (int pass = 0; pass < 2; pass++) {
        uint64_t ic;
        cpu_init(cpu, 0);
        memset(gmem.base + CODE, 0, 0x1000);
        memcpy(gmem.base + CODE, c, sizeof(c));
        ic = cpu->icount;
        emu_exec(cpu, 1); /* fills the TLB through the one-instruction path */
        assert_int_equal(emu_exec(cpu, 100), EMU_STOP_HLT);
        assert_int_equal(frame_rip(true), CODE + 13);
        assert_int_equal(cpu->icount - ic, 5 + 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arith_flags),
        cmocka_unit_test(test_registers_and_sizes),
        cmocka_unit_test(test_call_ret_push_pop),
        cmocka_unit_test(test_compat_mode),
        cmocka_unit_test(test_string),
        cmocka_unit_test(test_rep_fault),
        cmocka_unit_test(test_divide_error),
        cmocka_unit_test(test_ud_and_limits),
        cmocka_unit_test(test_fetch_page_end),
        cmocka_unit_test(test_stops),
        cmocka_unit_test(test_smc),
        cmocka_unit_test(test_midfault),
        cmocka_unit_test(test_locked_cmpxchg),
        cmocka_unit_test(test_lock_two_cpus),
        cmocka_unit_test(test_reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
