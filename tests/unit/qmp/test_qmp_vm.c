/* test_qmp_vm.c: the VM commands and events of cmds_vm.c against a fake VM (no KVM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "qmp/cmds_vm.h"
#include "qmp/server.h"
#include "qmp/session.h"

/* ---- the fake VM: the vm.h calls cmds_vm.c makes, with hooks fired synchronously ---- */

static struct {
    int stop_calls, cont_calls, reset_calls;
    int cont_rc, reset_rc;
    int exit_status;
    char exit_reason[32];
} fake;

enum vm_runstate vm_get_state(struct vm *vm)
{
    return vm->state;
}

static void set_state(struct vm *vm, enum vm_runstate s)
{
    enum vm_runstate old = vm->state;

    vm->state = s;
    if (old != s && vm->hooks.state_changed)
        vm->hooks.state_changed(vm->hooks.opaque, old, s);
}

int vm_stop(struct vm *vm)
{
    fake.stop_calls++;
    if (vm->state == VM_RUNNING)
        set_state(vm, VM_PAUSED);
    return 0;
}

int vm_cont(struct vm *vm)
{
    fake.cont_calls++;
    if (fake.cont_rc)
        return fake.cont_rc;
    set_state(vm, VM_RUNNING);
    return 0;
}

int vm_system_reset(struct vm *vm)
{
    fake.reset_calls++;
    return fake.reset_rc;
}

void vm_request_exit(struct vm *vm, int status, const char *reason)
{
    fake.exit_status = status;
    snprintf(fake.exit_reason, sizeof(fake.exit_reason), "%s", reason);
    /* vm.c reports the shutdown at once and the state change after it */
    if (vm->hooks.shutdown)
        vm->hooks.shutdown(vm->hooks.opaque, reason);
    set_state(vm, VM_SHUTDOWN);
}

/* ---- a recording client ---- */

struct fx {
    struct vm vm;
    struct qmp_server *s;
    struct qmp_session *sess;
    char *out;
    size_t len;
};

static int cap_write(void *opaque, const char *buf, size_t len)
{
    struct fx *f = opaque;

    f->out = realloc(f->out, f->len + len + 1);
    memcpy(f->out + f->len, buf, len);
    f->len += len;
    f->out[f->len] = '\0';
    return 0;
}

static const struct qmp_session_ops cap_ops = {.write = cap_write};

static char *pop(struct fx *f)
{
    char *end = f->out ? strstr(f->out, "\r\n") : NULL, *line;
    size_t n;

    if (!end)
        return NULL;
    n = (size_t)(end - f->out);
    line = strndup(f->out, n);
    memmove(f->out, end + 2, f->len - n - 2 + 1);
    f->len -= n + 2;
    return line;
}

static void expect(struct fx *f, const char *want)
{
    char *line = pop(f);

    assert_non_null(line);
    assert_string_equal(line, want);
    free(line);
}

/* An event line: everything after the timestamp must be `rest`. */
static void expect_event(struct fx *f, const char *rest)
{
    char *line = pop(f), *p;

    assert_non_null(line);
    assert_memory_equal(line, "{\"timestamp\": {\"seconds\": ", 26);
    p = strstr(line, "}, \"event\": ");
    assert_non_null(p);
    assert_string_equal(p + 3, rest);
    free(line);
}

static void cmd(struct fx *f, const char *json)
{
    assert_int_equal(qmp_session_feed(f->sess, json, strlen(json)), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[128];

    memset(&fake, 0, sizeof(fake));
    fake.exit_status = -1;
    f->vm.state = VM_RUNNING;
    f->s = qmp_server_new(NULL, NULL, err, sizeof(err));
    assert_non_null(f->s);
    assert_int_equal(qmp_register_vm_commands(f->s, &f->vm), 0);
    qmp_attach_vm_events(f->s, &f->vm);
    f->sess = qmp_server_attach(f->s, &cap_ops, f);
    free(pop(f));
    cmd(f, "{\"execute\": \"qmp_capabilities\"}");
    expect(f, "{\"return\": {}}");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    qmp_server_free(f->s);
    /* the VM outlives the server: its hooks must not point at freed memory */
    assert_null(f->vm.hooks.opaque);
    assert_null(f->vm.hooks.state_changed);
    free(f->out);
    free(f);
    return 0;
}

static void test_query_status(void **state)
{
    struct fx *f = *state;

    cmd(f, "{\"execute\": \"query-status\"}");
    expect(f, "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}");
    f->vm.state = VM_PRELAUNCH;
    cmd(f, "{\"execute\": \"query-status\", \"id\": 1}");
    expect(f, "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": "
              "false}, \"id\": 1}");
    cmd(f, "{\"execute\": \"query-status\", \"arguments\": {\"x\": 1}}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'x' is "
              "unexpected\"}}");
}

static void test_stop_cont(void **state)
{
    struct fx *f = *state;

    cmd(f, "{\"execute\": \"stop\"}");
    expect_event(f, "\"event\": \"STOP\"}");
    expect(f, "{\"return\": {}}");
    assert_int_equal(f->vm.state, VM_PAUSED);
    cmd(f, "{\"execute\": \"stop\"}"); /* already stopped: fine, no event */
    expect(f, "{\"return\": {}}");
    assert_null(pop(f));

    cmd(f, "{\"execute\": \"cont\"}");
    expect_event(f, "\"event\": \"RESUME\"}");
    expect(f, "{\"return\": {}}");
    cmd(f, "{\"execute\": \"cont\"}"); /* already running: fine, vm_cont not even called */
    expect(f, "{\"return\": {}}");
    assert_int_equal(fake.cont_calls, 1);
    assert_null(pop(f));
}

static void test_cont_errors(void **state)
{
    struct fx *f = *state;

    f->vm.state = VM_SHUTDOWN;
    fake.cont_rc = -EINVAL;
    cmd(f, "{\"execute\": \"cont\"}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Resetting the Virtual "
              "Machine is required\"}}");
    f->vm.state = VM_INMIGRATE;
    fake.cont_rc = -EBUSY;
    cmd(f, "{\"execute\": \"cont\"}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The VM cannot continue "
              "before the incoming migration ends\"}}");
    f->vm.state = VM_PAUSED;
    fake.cont_rc = -ENOMEM;
    cmd(f, "{\"execute\": \"cont\"}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Cannot continue the VM: "
              "Cannot allocate memory\"}}");
    assert_null(pop(f));
}

static void test_system_reset(void **state)
{
    struct fx *f = *state;

    cmd(f, "{\"execute\": \"system_reset\", \"id\": 4}");
    expect_event(f, "\"event\": \"RESET\", \"data\": {\"guest\": false, \"reason\": "
                    "\"host-qmp-system-reset\"}}"); /* the event first, as QEMU 7.2 */
    expect(f, "{\"return\": {}, \"id\": 4}");
    assert_int_equal(fake.reset_calls, 1);

    fake.reset_rc = -EIO;
    cmd(f, "{\"execute\": \"system_reset\"}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"System reset failed: "
              "Input/output error\"}}");
    assert_null(pop(f));
}

static void test_quit(void **state)
{
    struct fx *f = *state;

    cmd(f, "{\"execute\": \"quit\"}");
    expect(f, "{\"return\": {}}"); /* the reply is written before the exit is requested */
    expect_event(f, "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": "
                    "\"host-qmp-quit\"}}");
    expect_event(f, "\"event\": \"STOP\"}");
    assert_int_equal(fake.exit_status, 0);
    assert_string_equal(fake.exit_reason, "host-qmp-quit");
}

static void test_query_version(void **state)
{
    struct fx *f = *state;
    int major = 0, minor = 0, micro = 0;
    char want[256];

    sscanf(TANDEM_VERSION, "%d.%d.%d", &major, &minor, &micro);
    snprintf(want, sizeof(want),
             "{\"return\": {\"qemu\": {\"micro\": %d, \"minor\": %d, \"major\": %d}, "
             "\"package\": \"tandem-%s\"}}",
             micro, minor, major, TANDEM_VERSION);
    cmd(f, "{\"execute\": \"query-version\"}");
    expect(f, want);
}

static void test_hook_events(void **state)
{
    struct fx *f = *state;
    struct vm_hooks *h = &f->vm.hooks;

    h->guest_reset(h->opaque);
    expect_event(f, "\"event\": \"RESET\", \"data\": {\"guest\": true, \"reason\": "
                    "\"guest-reset\"}}");
    h->shutdown(h->opaque, "guest-shutdown");
    expect_event(f, "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": "
                    "\"guest-shutdown\"}}");
    h->shutdown(h->opaque, "host-signal");
    expect_event(f, "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": "
                    "\"host-signal\"}}");
    h->state_changed(h->opaque, VM_PRELAUNCH, VM_RUNNING);
    expect_event(f, "\"event\": \"RESUME\"}");
    h->state_changed(h->opaque, VM_RUNNING, VM_INTERNAL_ERROR);
    expect_event(f, "\"event\": \"STOP\"}");
    h->state_changed(h->opaque, VM_PAUSED, VM_SHUTDOWN); /* not running before or after */
    h->state_changed(h->opaque, VM_PRELAUNCH, VM_INMIGRATE);
    assert_null(pop(f));
}

static void test_command_list(void **state)
{
    struct fx *f = *state;

    cmd(f, "{\"execute\": \"query-commands\"}");
    expect(f, "{\"return\": [{\"name\": \"qmp_capabilities\"}, {\"name\": \"query-commands\"}, "
              "{\"name\": \"query-status\"}, {\"name\": \"stop\"}, {\"name\": \"cont\"}, "
              "{\"name\": \"system_reset\"}, {\"name\": \"quit\"}, {\"name\": "
              "\"query-version\"}]}");
    assert_int_equal(qmp_register_vm_commands(f->s, &f->vm), -EEXIST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_query_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_cont, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cont_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_system_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_list, setup, teardown),
    };

    return cmocka_run_group_tests_name("qmp-vm", tests, NULL, NULL);
}
