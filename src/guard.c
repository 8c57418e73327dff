/* src/guard.c — SIGBUS/SIGSEGV inside mmkit's copies become error codes.
 *
 * One process-wide handler.  Two ways of knowing that a fault is ours:
 *
 * - On x86-64 (GCC or Clang, not under a sanitizer), copies run in two small
 *   assembly routines whose addresses the handler knows, the way the Linux
 *   kernel guards its copies from user space: a fault with the instruction
 *   pointer inside them is ours by construction, and the handler resumes at a
 *   fixup that returns the errno.  Nothing is set up per call, so a guarded
 *   copy costs what a memcpy costs, and consecutive copies overlap their cache
 *   misses as memcpy's would.
 *
 * - Everywhere, and for mmk_guard_run: per-thread stacks of scopes.  A scope
 *   names the address ranges it owns (a copy's source and destination) or,
 *   for mmk_guard_run, any SIGBUS; the handler walks the faulting thread's
 *   scopes from the innermost out and jumps back to the first that owns the
 *   fault.  The jump buffer is GCC/Clang's __builtin_setjmp where we can (three
 *   words; the compiler reloads the rest in the receiving frame) and sigsetjmp
 *   without the signal mask elsewhere and under sanitizers, whose runtimes
 *   intercept siglongjmp to keep their shadow stacks right.  No system call.
 *
 * Everything else goes to the handler installed before.  SA_NODEFER keeps the
 * signal unblocked while the handler runs, so jumping out of it leaves the
 * mask as it was; the error path unblocks the two signals anyway, in case the
 * fault arrived with them blocked.
 */
#include <mmkit/guard.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <ucontext.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard_internal.h"

enum { GUARD_UNSET = 0, GUARD_ON = 1, GUARD_OFF = 2 };

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GUARD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define GUARD_SANITIZED 1
#endif
#endif

#if (defined(__GNUC__) || defined(__clang__)) && !defined(GUARD_SANITIZED) && \
    (defined(__x86_64__) || defined(__aarch64__) || defined(__i386__))
/* The receiving function must not be inlined into a caller whose frame the
 * compiler might rearrange; both uses below are in their own functions. */
typedef void *guard_jmp_buf[5];
#define GUARD_SETJMP(jb)      __builtin_setjmp(jb)
#define GUARD_LONGJMP(jb, v)  __builtin_longjmp(jb, 1)
#define GUARD_FAST_JMP 1
#else
typedef sigjmp_buf guard_jmp_buf;
#define GUARD_SETJMP(jb)      sigsetjmp(jb, 0)
#define GUARD_LONGJMP(jb, v)  siglongjmp(jb, v)
#endif

/* Large copies on x86-64 skip the scope entirely, the way the kernel guards
 * its copies from user space: one `rep movsb` (what memcpy itself uses for
 * large sizes on CPUs with fast string moves), whose address the handler
 * knows.  A fault on it is ours by construction; the handler classifies it
 * from the registers, puts the errno in %rax and the fault address in %rdx,
 * and resumes at the fixup, which stores the address and returns.  Nothing
 * is set up per call. */
#if defined(GUARD_FAST_JMP) && defined(__x86_64__) && defined(__linux__)
#define GUARD_MOVSB 1
/* Below this size the scope path is faster (rep movsb has a start-up cost). */
#define GUARD_MOVSB_MIN 2048
__asm__(".text\n"
        ".p2align 4\n"
        ".hidden mmk__guard_movsb\n"
        ".globl mmk__guard_movsb\n"
        ".type mmk__guard_movsb,@function\n"
        "mmk__guard_movsb:\n"          /* (dst rdi, src rsi, n rdx, fault rcx) */
        "    mov %rcx, %r8\n"
        "    mov %rdx, %rcx\n"
        ".hidden mmk__guard_movsb_insn\n"
        ".globl mmk__guard_movsb_insn\n"
        "mmk__guard_movsb_insn:\n"
        "    rep movsb\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".hidden mmk__guard_movsb_fixup\n"
        ".globl mmk__guard_movsb_fixup\n"
        "mmk__guard_movsb_fixup:\n"    /* eax = -errno, rdx = fault address */
        "    test %r8, %r8\n"
        "    jz 1f\n"
        "    mov %rdx, (%r8)\n"
        "1:  ret\n"
        ".size mmk__guard_movsb, .-mmk__guard_movsb\n");
int mmk__guard_movsb(void *dst, const void *src, size_t n, void **fault);
extern const char mmk__guard_movsb_insn[], mmk__guard_movsb_fixup[];

/* Smaller copies: plain loads and stores (SSE2, in every x86-64), so the CPU
 * overlaps the cache misses of consecutive calls as it would for memcpy.  A
 * fault anywhere between _begin and _end is ours; %rsi and %rdx (source and
 * length) stay untouched, so the handler can tell a source fault from a
 * destination one.  Sizes 1 to 2047 (0 never reaches it). */
__asm__(".text\n"
        ".p2align 4\n"
        ".hidden mmk__guard_copy_small\n"
        ".globl mmk__guard_copy_small\n"
        ".type mmk__guard_copy_small,@function\n"
        "mmk__guard_copy_small:\n"     /* (dst rdi, src rsi, n rdx, fault rcx) */
        "    mov %rcx, %r8\n"
        ".hidden mmk__guard_small_begin\n"
        ".globl mmk__guard_small_begin\n"
        "mmk__guard_small_begin:\n"
        "    cmp $16, %rdx\n"
        "    jb 5f\n"
        "    xor %eax, %eax\n"
        "    lea -16(%rdx), %r9\n"         /* start of the last 16 bytes */
        "1:  cmp %r9, %rax\n"
        "    jae 2f\n"
        "    movdqu (%rsi,%rax), %xmm0\n"
        "    movdqu %xmm0, (%rdi,%rax)\n"
        "    add $16, %rax\n"
        "    jmp 1b\n"
        "2:  movdqu (%rsi,%r9), %xmm0\n"   /* the last 16, overlapping */
        "    movdqu %xmm0, (%rdi,%r9)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        "5:  cmp $8, %rdx\n"               /* 8..15: first and last 8 */
        "    jb 6f\n"
        "    mov (%rsi), %rax\n"
        "    mov -8(%rsi,%rdx), %r9\n"
        "    mov %rax, (%rdi)\n"
        "    mov %r9, -8(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        "6:  cmp $4, %rdx\n"               /* 4..7 */
        "    jb 7f\n"
        "    mov (%rsi), %eax\n"
        "    mov -4(%rsi,%rdx), %r9d\n"
        "    mov %eax, (%rdi)\n"
        "    mov %r9d, -4(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        "7:  cmp $2, %rdx\n"               /* 2..3 */
        "    jb 8f\n"
        "    movzwl (%rsi), %eax\n"
        "    movzwl -2(%rsi,%rdx), %r9d\n"
        "    mov %ax, (%rdi)\n"
        "    mov %r9w, -2(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        "8:  movzbl (%rsi), %eax\n"        /* 1 */
        "    mov %al, (%rdi)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".hidden mmk__guard_small_end\n"
        ".globl mmk__guard_small_end\n"
        "mmk__guard_small_end:\n"
        ".size mmk__guard_copy_small, .-mmk__guard_copy_small\n");
int mmk__guard_copy_small(void *dst, const void *src, size_t n, void **fault);
extern const char mmk__guard_small_begin[], mmk__guard_small_end[];
#endif

enum scope_kind { SCOPE_COPY, SCOPE_RUN };

struct scope {
    guard_jmp_buf    jb;
    enum scope_kind  kind;
    uintptr_t        src, src_end;  /* SCOPE_COPY: the ranges it owns */
    uintptr_t        dst, dst_end;
    void *volatile   fault;         /* the faulting address, set by the handler */
    volatile int     err;           /* the errno to return, set by the handler */
    struct scope    *prev;
};

static atomic_int state = GUARD_UNSET;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction old_bus, old_segv;

/* initial-exec: a plain %fs-relative access, safe inside a signal handler even
 * from a shared library (no lazy TLS allocation). */
static __thread struct scope *top __attribute__((tls_model("initial-exec")));

/* The errno a scope returns for this fault, or 0 if the fault is not its. */
static int owns(const struct scope *s, int sig, uintptr_t a)
{
    if (s->kind == SCOPE_RUN)
        return sig == SIGBUS ? EIO : 0;
    if (a >= s->src && a < s->src_end)
        return sig == SIGBUS ? EIO : EFAULT;
    if (a >= s->dst && a < s->dst_end)
        return sig == SIGBUS ? ENOSPC : EFAULT;
    return 0;
}

/* Hand a fault that is not ours to whoever had the signal before us. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old->sa_handler == SIG_IGN && si->si_code <= 0)
        return; /* sent with kill(): ignored, as before us */
    if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        /* Default action: restore it and let the faulting instruction run
         * again, so the process dies of this signal with a core dump, at the
         * real place.  A signal that was sent rather than caused is raised
         * again instead. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        if (si->si_code <= 0)
            raise(sig);
        return;
    }
    old->sa_handler(sig);
}

#ifdef GUARD_MOVSB
/* A fault in one of the guarded copy routines: resume at the fixup with the
 * errno. */
static int movsb_fixup(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    greg_t *r = uc->uc_mcontext.gregs;
    uintptr_t ip = (uintptr_t)r[REG_RIP], a = (uintptr_t)si->si_addr;
    uintptr_t src = (uintptr_t)r[REG_RSI];
    bool on_src;
    if (ip == (uintptr_t)mmk__guard_movsb_insn) {
        /* rsi/rdi point at the next byte to read/write: the fault is on one
         * of the two pages there. */
        uintptr_t page = 4096;
        on_src = a / page == src / page;
    } else if (ip >= (uintptr_t)mmk__guard_small_begin &&
               ip < (uintptr_t)mmk__guard_small_end) {
        on_src = a >= src && a - src < (uintptr_t)r[REG_RDX];
    } else {
        return 0;
    }
    int err = sig == SIGSEGV ? EFAULT : on_src ? EIO : ENOSPC;
    r[REG_RAX] = -err;
    r[REG_RDX] = (greg_t)a;
    r[REG_RIP] = (greg_t)(uintptr_t)mmk__guard_movsb_fixup;
    return 1;
}
#endif

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    /* Only faults the kernel raised (si_code > 0), never kill()/raise(). */
    if (si && si->si_code > 0) {
#ifdef GUARD_MOVSB
        if (uc && movsb_fixup(sig, si, uc))
            return;
#endif
        uintptr_t a = (uintptr_t)si->si_addr;
        for (struct scope *s = top; s; s = s->prev) {
            int err = owns(s, sig, a);
            if (err) {
                s->fault = si->si_addr;
                s->err = err;
                top = s->prev;
                GUARD_LONGJMP(s->jb, err);
            }
        }
    }
    chain(sig, si, uc);
}

static int install_locked(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old_bus) < 0)
        return -errno;
    if (sigaction(SIGSEGV, &sa, &old_segv) < 0) {
        int err = -errno;
        sigaction(SIGBUS, &old_bus, NULL);
        return err;
    }
    return 0;
}

int mmk__guard_ensure(void)
{
    int s = atomic_load_explicit(&state, memory_order_acquire);
    if (s != GUARD_UNSET)
        return s == GUARD_ON ? 0 : -ECANCELED;
    int rc = 0;
    pthread_mutex_lock(&install_lock);
    s = atomic_load_explicit(&state, memory_order_relaxed);
    if (s == GUARD_UNSET) {
        const char *env = getenv("MMK_NO_SIGNALS");
        if (env && *env && strcmp(env, "0") != 0) {
            s = GUARD_OFF;
        } else if ((rc = install_locked()) == 0) {
            s = GUARD_ON;
        }
        if (s != GUARD_UNSET)
            atomic_store_explicit(&state, s, memory_order_release);
    }
    pthread_mutex_unlock(&install_lock);
    if (rc < 0)
        return rc;
    return s == GUARD_ON ? 0 : -ECANCELED;
}

int mmk_guard_install(void)
{
    return mmk__guard_ensure();
}

int mmk_guard_disable(void)
{
    int rc = 0;
    pthread_mutex_lock(&install_lock);
    int s = atomic_load_explicit(&state, memory_order_relaxed);
    if (s == GUARD_ON)
        rc = -EBUSY;
    else
        atomic_store_explicit(&state, GUARD_OFF, memory_order_release);
    pthread_mutex_unlock(&install_lock);
    return rc;
}

int mmk_guard_active(void)
{
    return atomic_load_explicit(&state, memory_order_acquire) == GUARD_ON;
}

static void unblock_fault_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    sigaddset(&set, SIGSEGV);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* Whether copies are guarded; installs the handler at first use. */
static inline int guarding(void)
{
    int s = atomic_load_explicit(&state, memory_order_acquire);
    if (__builtin_expect(s == GUARD_UNSET, 0))
        return mmk__guard_ensure() == 0;
    return s == GUARD_ON;
}

__attribute__((noinline)) int mmk__guard_copy_at(void *dst, const void *src, size_t n,
                                                 void **fault)
{
    if (n == 0)
        return 0;
    if (!guarding()) {
        memcpy(dst, src, n);
        return 0;
    }
#ifdef GUARD_MOVSB
    if (n >= GUARD_MOVSB_MIN)
        return mmk__guard_movsb(dst, src, n, fault);
    return mmk__guard_copy_small(dst, src, n, fault);
#endif
    struct scope s;
    s.kind = SCOPE_COPY;
    s.src = (uintptr_t)src;
    s.src_end = s.src + n;
    s.dst = (uintptr_t)dst;
    s.dst_end = s.dst + n;
    s.prev = top; /* fault and err are set by the handler before it jumps */
    if (GUARD_SETJMP(s.jb)) {
        top = s.prev;
        unblock_fault_signals();
        if (fault)
            *fault = s.fault;
        return -s.err;
    }
    top = &s;
    atomic_signal_fence(memory_order_seq_cst);
    memcpy(dst, src, n);
    atomic_signal_fence(memory_order_seq_cst);
    top = s.prev;
    return 0;
}

int mmk_guard_copy(void *dst, const void *src, size_t n)
{
    if (n && (!dst || !src))
        return -EINVAL;
    return mmk__guard_copy_at(dst, src, n, NULL);
}

__attribute__((noinline)) int mmk_guard_run(int (*fn)(void *arg), void *arg)
{
    if (!fn)
        return -EINVAL;
    if (!guarding())
        return fn(arg);
    struct scope s;
    s.kind = SCOPE_RUN;
    s.src = s.src_end = s.dst = s.dst_end = 0;
    s.fault = NULL;
    s.err = 0;
    s.prev = top;
    if (GUARD_SETJMP(s.jb)) {
        top = s.prev;
        unblock_fault_signals();
        return -EIO;
    }
    top = &s;
    atomic_signal_fence(memory_order_seq_cst);
    int r = fn(arg);
    atomic_signal_fence(memory_order_seq_cst);
    top = s.prev;
    return r;
}
