/*  testutil.c - see testutil.h. */
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

char *tu_tempdir(const char *prefix)
{
    char *path = zsys_sprintf("/tmp/%s-XXXXXX", prefix);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

void tu_rmtree(const char *path)
{
    char *cmd = zsys_sprintf("rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", path);
    zstr_free(&cmd);
}

int tu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free port");
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

const char *tu_build_dir(void)
{
    const char *dir = getenv("RETAIL_BUILD_DIR");
    return dir && *dir ? dir : "build";
}

char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t used = 0, cap = 4096;
    char *text = malloc(cap);
    size_t got;
    while (text && (got = fread(text + used, 1, cap - used - 1, f)) > 0) {
        used += got;
        if (cap - used - 1 == 0) {
            char *grown = realloc(text, cap * 2);
            if (!grown)
                free(text);
            text = grown;
            cap *= 2;
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (!text || failed) {
        free(text);
        return NULL;
    }
    text[used] = '\0';
    if (len)
        *len = used;
    return text;
}

/* The length of the name in "NAME=VALUE". */
static size_t s_env_key_len(const char *entry)
{
    return strcspn(entry, "=");
}

/* Does one of entries (NULL-terminated) set the variable of entry? */
static bool s_env_sets(const char *const *entries, const char *entry)
{
    size_t n = s_env_key_len(entry);
    for (int i = 0; entries && entries[i]; i++)
        if (s_env_key_len(entries[i]) == n && strncmp(entries[i], entry, n) == 0)
            return true;
    return false;
}

pid_t tu_spawn(const tu_spawn_t *how)
{
    /* everything the child needs is built before fork: a test process
     * has threads (CZMQ's, libcurl's), and after fork only async-signal-
     * safe calls are allowed */
    char *path = zsys_sprintf("%s/%s", tu_build_dir(), how->program);
    size_t n_environ = 0, n_env = 0;
    while (environ[n_environ])
        n_environ++;
    while (how->env && how->env[n_env])
        n_env++;
    const char **envp = calloc(n_environ + n_env + 1, sizeof *envp);
    const char *args[32] = {path};
    if (!path || !envp) {
        zstr_free(&path);
        free(envp);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < n_environ; i++)
        if (!(how->clean && strncmp(environ[i], "RETAIL_", 7) == 0) &&
            !s_env_sets(how->env, environ[i]))
            envp[n++] = environ[i];
    for (size_t i = 0; i < n_env; i++)
        if (!s_env_sets(how->env + i + 1, how->env[i])) /* the last of a KEY wins */
            envp[n++] = how->env[i];
    envp[n] = NULL;
    int argc = 1;
    for (int i = 0; how->argv && how->argv[i] && argc < 31; i++)
        args[argc++] = how->argv[i];
    args[argc] = NULL;

    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Dies with the test, even one killed by SIGKILL: a daemon left
         * behind would hold its port and confuse the next run. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        if (how->out_path || how->err_path) {
            int null = open("/dev/null", O_RDONLY);
            if (null < 0 || dup2(null, STDIN_FILENO) < 0)
                _exit(127);
            close(null);
        }
        const char *logs[2] = {how->out_path, how->err_path};
        for (int fd = 0; fd < 2; fd++) {
            if (!logs[fd])
                continue;
            int log = open(logs[fd], O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (log < 0 || dup2(log, fd + 1) < 0)
                _exit(127);
            close(log);
        }
        execve(path, (char *const *)args, (char *const *)envp);
        perror("execve");
        _exit(127);
    }
    if (pid < 0)
        perror("fork");
    free(envp);
    zstr_free(&path);
    return pid < 0 ? -1 : pid;
}

pid_t tu_spawn_retaild(const char *const *argv, const char *const *env)
{
    tu_spawn_t how = {.program = "retaild", .argv = argv, .env = env};
    return tu_spawn(&how);
}

int tu_wait(pid_t pid, int timeout_ms)
{
    int status;
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

int tu_stop(pid_t pid, int sig, int timeout_ms)
{
    kill(pid, sig);
    return tu_wait(pid, timeout_ms);
}
