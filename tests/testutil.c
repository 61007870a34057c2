/*  testutil.c - see testutil.h. */
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

pid_t tu_spawn_retaild(const char *const *argv, const char *const *env)
{
    char *path = zsys_sprintf("%s/retaild", tu_build_dir());
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Dies with the test, even one killed by SIGKILL: a daemon left
         * behind would hold its port and confuse the next run. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        const char *args[32] = {path};
        int n = 1;
        for (int i = 0; argv && argv[i] && n < 31; i++)
            args[n++] = argv[i];
        args[n] = NULL;
        execv(path, (char *const *)args);
        perror("execv retaild");
        _exit(127);
    }
    zstr_free(&path);
    return pid;
}

int tu_stop(pid_t pid, int sig, int timeout_ms)
{
    kill(pid, sig);
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
