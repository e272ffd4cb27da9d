/*
 * nanoclaw-guest: PID 1 of the vibe runtime's QEMU guests.
 *
 * Boot: mount the kernel's file systems, load the modules listed in the initramfs, mount the
 * group's disk (/dev/vda, ext4), switch to a small tmpfs root (so that every run can
 * pivot_root), disable module loading, find the virtio-serial ports.
 *
 * Then serve runs, one at a time, until the VM has been idle for its keep-warm time:
 *
 *   port nanoclaw.ctl     text lines, both ways (see the host's qemu/protocol.py)
 *   port nanoclaw.stdin   the run's token, then exactly its stdin bytes
 *   port nanoclaw.stdout  the run's token, then the agent's stdout, byte for byte
 *   port nanoclaw.stderr  the run's token, then the agent's stderr
 *
 * Every port is non-blocking and polled, with bounded buffers: a slow reader slows the agent
 * down (the pipe fills), nothing is dropped. A host that goes away (the port reports HUP)
 * ends its session: its run is killed. A new host session starts with "H <nonce>".
 *
 * A run: a child in new pid, mount, ipc and uts namespaces ("run-init", still real root)
 * builds the run's root on the disk: /proc (its /sys read-only), a read-only /sys, a
 * private /dev (no disks, no ports), fresh /tmp and /run, the shares (virtiofs), the masks
 * and files (read-only binds of copies sent over ctl); it pivots into it and forks the
 * agent, which enters a user namespace with an identity map and then a new mount
 * namespace: every mount is now locked (cannot be unmounted or made writable). When the
 * agent exits, run-init exits and the kernel kills whatever the run left behind.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BOOTED "nanoclaw-qemu: guest booted"
#define BUFSZ (256 * 1024)
#define MAX_LINE (24 * 1024 * 1024)
#define LEASE_MS 10000
#define TOKEN_LEN 16
#define EXIT_PORT 0xf4
#define EXIT_CLEAN 0x10 /* QEMU exits with (0x10 << 1) | 1 = 33: powered off when idle */

extern char **environ;

static int debug;
static long long idle_ms_boot = 60000;
static int want_net;

/* ------------------------------------------------------------------ small helpers */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long now_ms(void);
static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = debug ? snprintf(buf, sizeof buf, "nanoclaw-guest: [%lld] ", now_ms()) : snprintf(buf, sizeof buf, "nanoclaw-guest: ");
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof buf - n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	if (write(2, buf, n) < 0) {
	}
}

#define trace(...) \
	do { \
		if (debug) \
			say(__VA_ARGS__); \
	} while (0)

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		say("out of memory");
		sync();
		reboot(RB_POWER_OFF);
		_exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode hex text into a new buffer (NUL-terminated); *len gets the byte count. */
static char *unhex(const char *s, size_t *len)
{
	size_t n = strlen(s);
	if (n % 2)
		return NULL;
	char *out = xmalloc(n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++) {
		int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
		if (a < 0 || b < 0) {
			free(out);
			return NULL;
		}
		out[i] = (char)(a * 16 + b);
	}
	out[n / 2] = 0;
	if (len)
		*len = n / 2;
	return out;
}

static void hex_into(char *dst, const char *src, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		dst[2 * i] = digits[(unsigned char)src[i] >> 4];
		dst[2 * i + 1] = digits[(unsigned char)src[i] & 15];
	}
	dst[2 * n] = 0;
}

/* ------------------------------------------------------------------ buffers */

struct buf {
	unsigned char *d;
	size_t r, w;
};

static void buf_init(struct buf *b)
{
	if (!b->d)
		b->d = xmalloc(BUFSZ);
	b->r = b->w = 0;
}
static size_t buf_len(struct buf *b) { return b->w - b->r; }
static size_t buf_room(struct buf *b)
{
	if (b->r == b->w)
		b->r = b->w = 0;
	if (b->r > 0 && BUFSZ - b->w < 4096) {
		memmove(b->d, b->d + b->r, b->w - b->r);
		b->w -= b->r;
		b->r = 0;
	}
	return BUFSZ - b->w;
}
static void buf_put(struct buf *b, const void *p, size_t n)
{
	/* only for small control data, which always fits */
	if (buf_room(b) < n)
		return;
	memcpy(b->d + b->w, p, n);
	b->w += n;
}

/* ------------------------------------------------------------------ boot */

static void load_modules(const char *list)
{
	FILE *f = fopen(list, "re");
	char line[256];
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		char path[512];
		snprintf(path, sizeof path, "/lib/modules/%s.ko", line);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
			say("error: cannot load kernel module %s: %s", line, strerror(errno));
		close(fd);
		unlink(path); /* frees the initramfs's memory */
	}
	fclose(f);
}

static void run_cmd(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	if (pid > 0)
		waitpid(pid, &st, 0);
}

static void link_up(const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (s >= 0)
		close(s);
}

static void power_off(int clean);

static void fatal(const char *what)
{
	say("error: %s", what);
	power_off(0);
}

static void parse_cmdline(int *probe)
{
	char buf[4096] = {0};
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof buf - 1);
		(void)n;
		close(fd);
	}
	for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
		if (!strcmp(tok, "nanoclaw.debug"))
			debug = 1;
		else if (!strcmp(tok, "nanoclaw.probe"))
			*probe = 1;
		else if (!strcmp(tok, "nanoclaw.net"))
			want_net = 1;
		else if (!strncmp(tok, "nanoclaw.idle=", 14))
			idle_ms_boot = atoll(tok + 14);
	}
}

static int disk_mounted;

static void boot(void)
{
	int probe = 0;
	mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
	int con = open("/dev/console", O_RDWR | O_CLOEXEC);
	int null = open("/dev/null", O_RDWR);
	if (null >= 0)
		dup2(null, 0);
	if (con >= 0) {
		dup2(con, 1);
		dup2(con, 2);
	}
	parse_cmdline(&probe);
	trace("boot: loading modules");
	load_modules("/etc/nanoclaw/modules");
	if (want_net)
		load_modules("/etc/nanoclaw/modules-net");
	if (probe) {
		printf("%s\n", BOOTED);
		fflush(stdout);
		sync();
		reboot(RB_POWER_OFF);
	}
	/* The root the runs pivot away from: a tmpfs (pivot_root refuses the initramfs). */
	mkdir("/base", 0755);
	if (mount("tmpfs", "/base", "tmpfs", 0, "mode=0755,size=1m"))
		fatal("cannot mount the guest's base tmpfs");
	const char *dirs[] = {"/base/dev", "/base/proc", "/base/sys", "/base/newroot", "/base/stage"};
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
		mkdir(dirs[i], 0755);
	for (int i = 0; i < 500; i++) {
		struct stat st;
		if (stat("/dev/vda", &st) == 0)
			break;
		usleep(10000);
	}
	if (mount("/dev/vda", "/base/newroot", "ext4", MS_NOATIME, NULL)) {
		say("error: cannot mount the disk (ext4 on /dev/vda): %s", strerror(errno));
		power_off(0);
	}
	disk_mounted = 1;
	trace("boot: disk mounted");
	link_up("lo");
	if (want_net) {
		char *up[] = {"/bin/ip", "link", "set", "eth0", "up", NULL};
		char *addr[] = {"/bin/ip", "addr", "add", "10.0.2.15/24", "dev", "eth0", NULL};
		char *route[] = {"/bin/ip", "route", "add", "default", "via", "10.0.2.2", NULL};
		run_cmd(up);
		run_cmd(addr);
		run_cmd(route);
	}
	if (mount("/dev", "/base/dev", NULL, MS_MOVE, NULL) ||
	    mount("/proc", "/base/proc", NULL, MS_MOVE, NULL) ||
	    mount("/sys", "/base/sys", NULL, MS_MOVE, NULL))
		fatal("cannot move the kernel's file systems");
	if (chdir("/base") || mount(".", "/", NULL, MS_MOVE, NULL) || chroot(".") || chdir("/"))
		fatal("cannot switch to the base tmpfs");
	if (write_file("/proc/sys/kernel/modules_disabled", "1"))
		say("warning: cannot disable module loading");
}

/* ------------------------------------------------------------------ ports */

struct port {
	const char *name;
	int fd;
};
static struct port ports[] = {
	{"nanoclaw.ctl", -1}, {"nanoclaw.stdin", -1}, {"nanoclaw.stdout", -1}, {"nanoclaw.stderr", -1}};
enum { P_CTL, P_IN, P_OUT, P_ERR };

static void find_ports(void)
{
	for (int tries = 0; tries < 500; tries++) {
		int missing = 0;
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char path[300], name[64] = {0};
			snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			ssize_t n = read(fd, name, sizeof name - 1);
			close(fd);
			if (n <= 0)
				continue;
			name[strcspn(name, "\n")] = 0;
			for (int i = 0; i < 4; i++) {
				if (ports[i].fd < 0 && !strcmp(name, ports[i].name)) {
					snprintf(path, sizeof path, "/dev/%s", e->d_name);
					ports[i].fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
				}
			}
		}
		if (d)
			closedir(d);
		for (int i = 0; i < 4; i++)
			missing += ports[i].fd < 0;
		if (!missing)
			break;
		usleep(10000);
	}
	for (int i = 0; i < 4; i++)
		if (ports[i].fd < 0) {
			say("error: virtio port %s not found", ports[i].name);
			power_off(0);
		}
	/* SIGIO on the control port: a host connecting, or data, wakes us while we wait. */
	fcntl(ports[P_CTL].fd, F_SETOWN, getpid());
	fcntl(ports[P_CTL].fd, F_SETFL, O_NONBLOCK | O_ASYNC);
}

/* ------------------------------------------------------------------ run requests */

struct strv {
	char **v;
	size_t n, cap;
};
static void strv_add(struct strv *s, char *item)
{
	if (s->n + 2 > s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		char **nv = xmalloc(s->cap * sizeof *nv);
		if (s->n)
			memcpy(nv, s->v, s->n * sizeof *nv);
		free(s->v);
		s->v = nv;
	}
	s->v[s->n++] = item;
	s->v[s->n] = NULL;
}
static void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof *s);
}

enum { ITEM_SHARE, ITEM_FILE, ITEM_DIR };
struct item {
	int kind;
	int ro;
	char *tag;
	char *path;
	char *data;
	size_t len;
};

struct request {
	int building;
	char token[TOKEN_LEN];
	long long stdin_len;
	long long keep_warm;
	struct strv argv, env;
	char *workdir, *hostname, *notfound;
	struct item *items;
	size_t nitems, cap;
};
static struct request req;

static void req_free(void)
{
	strv_free(&req.argv);
	strv_free(&req.env);
	free(req.workdir);
	free(req.hostname);
	free(req.notfound);
	for (size_t i = 0; i < req.nitems; i++) {
		free(req.items[i].tag);
		free(req.items[i].path);
		free(req.items[i].data);
	}
	free(req.items);
	memset(&req, 0, sizeof req);
}

static struct item *req_item(void)
{
	if (req.nitems == req.cap) {
		req.cap = req.cap ? req.cap * 2 : 16;
		struct item *ni = xmalloc(req.cap * sizeof *ni);
		if (req.nitems)
			memcpy(ni, req.items, req.nitems * sizeof *ni);
		free(req.items);
		req.items = ni;
	}
	struct item *it = &req.items[req.nitems++];
	memset(it, 0, sizeof *it);
	return it;
}

/* ------------------------------------------------------------------ run root (in run-init) */

static char run_error[1024];

static int fail(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(run_error, sizeof run_error, fmt, ap);
	va_end(ap);
	errno = saved;
	return -1;
}

static dev_t disk_dev;
static struct strv warnings;

/*
 * Open (O_PATH) guest path `path` under the run root `rootfd` without following a link:
 * missing folders are made; with `file`, the last part is a regular file (made empty when
 * missing and `create`). On the disk, a link or file where a folder must be is moved aside
 * (reported); anywhere else (a share) it is an error.
 */
static int walk(int rootfd, const char *path, int file, int create)
{
	char *copy = xstrdup(path), *save = NULL;
	int fd = dup(rootfd);
	char *part = strtok_r(copy, "/", &save);
	while (part && fd >= 0) {
		char *next = strtok_r(NULL, "/", &save);
		int last = next == NULL;
		if (!strcmp(part, "..") || !strcmp(part, ".")) {
			close(fd);
			free(copy);
			return fail("the guest path %s has a . or .. part", path);
		}
		int ok = 0;
		for (int attempt = 0; attempt < 3 && !ok; attempt++) {
			int flags = O_PATH | O_NOFOLLOW | O_CLOEXEC | ((last && file) ? 0 : O_DIRECTORY);
			int child = openat(fd, part, flags);
			if (child >= 0) {
				struct stat st;
				fstat(child, &st);
				if ((last && file) ? S_ISREG(st.st_mode) : S_ISDIR(st.st_mode)) {
					close(fd);
					fd = child;
					ok = 1;
					break;
				}
				close(child);
				errno = ENOTDIR;
			}
			if (errno == ENOENT && create) {
				int rc;
				if (last && file) {
					rc = openat(fd, part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
					if (rc >= 0)
						close(rc);
				} else {
					rc = mkdirat(fd, part, 0755);
				}
				if (rc < 0 && errno != EEXIST) {
					int e = errno;
					close(fd);
					free(copy);
					errno = e;
					return fail("cannot create the guest path %s: %s", path, strerror(e));
				}
				continue;
			}
			if (errno == ENOTDIR || errno == ELOOP) {
				struct stat parent;
				fstat(fd, &parent);
				if (parent.st_dev == disk_dev && create) {
					char aside[512];
					snprintf(aside, sizeof aside, "%s.nanoclaw-moved-%lld", part, (long long)time(NULL));
					if (renameat(fd, part, fd, aside) == 0) {
						char msg[1024];
						snprintf(msg, sizeof msg, "in the guest's disk, %s: %s was in the way (a link or a file) and was moved aside to %s", path, part, aside);
						strv_add(&warnings, xstrdup(msg));
						continue;
					}
				}
				close(fd);
				free(copy);
				errno = ENOTDIR;
				return fail("cannot use the guest path %s: %s is a link or not a %s", path, part, (last && file) ? "file" : "folder");
			}
			break;
		}
		if (!ok) {
			int e = errno;
			close(fd);
			free(copy);
			errno = e;
			return fail("cannot open the guest path %s (%s): %s", path, part, strerror(e));
		}
		part = next;
	}
	free(copy);
	return fd;
}

static int fdpath(char *buf, size_t n, int fd)
{
	return snprintf(buf, n, "/proc/self/fd/%d", fd);
}

/* Mount a new file system on the folder (or file) `path` of the run root. */
static int mount_at(int rootfd, const char *path, const char *src, const char *type, unsigned long flags, const char *opts)
{
	int fd = walk(rootfd, path, 0, 1);
	if (fd < 0)
		return -1;
	char target[64];
	fdpath(target, sizeof target, fd);
	int rc = mount(src, target, type, flags, opts);
	int err = errno;
	close(fd);
	if (rc)
		return fail("cannot mount %s at %s: %s", type ? type : src, path, strerror(err));
	return 0;
}

/* Bind `srcdir/srcname` read-only over the file or folder `fd` (open_tree + mount_setattr). */
static int bind_ro(int srcdir, const char *srcname, int targetfd, const char *what)
{
	int tree = syscall(SYS_open_tree, srcdir, srcname, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (srcname[0] ? 0 : AT_EMPTY_PATH));
	if (tree < 0)
		return fail("cannot copy the mount for %s: %s", what, strerror(errno));
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
	int rc = syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr);
	if (rc == 0)
		rc = syscall(SYS_move_mount, tree, "", targetfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
	int err = errno;
	close(tree);
	if (rc)
		return fail("cannot show %s read-only: %s", what, strerror(err));
	return 0;
}

static int make_dev(int rootfd)
{
	if (mount_at(rootfd, "/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k"))
		return -1;
	int dev = walk(rootfd, "/dev", 0, 0);
	if (dev < 0)
		return -1;
	struct {
		const char *name;
		int major, minor;
	} nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
	for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
		if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor))) {
			close(dev);
			return fail("cannot make /dev/%s: %s", nodes[i].name, strerror(errno));
		}
	mkdirat(dev, "pts", 0755);
	mkdirat(dev, "shm", 01777);
	symlinkat("pts/ptmx", dev, "ptmx");
	symlinkat("/proc/self/fd", dev, "fd");
	symlinkat("/proc/self/fd/0", dev, "stdin");
	symlinkat("/proc/self/fd/1", dev, "stdout");
	symlinkat("/proc/self/fd/2", dev, "stderr");
	close(dev);
	if (mount_at(rootfd, "/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"))
		return -1;
	return mount_at(rootfd, "/dev/shm", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

static int make_proc(int rootfd)
{
	if (mount_at(rootfd, "/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return -1;
	int proc = walk(rootfd, "/proc", 0, 0);
	if (proc < 0)
		return -1;
	/* What a guest root could use to reach the guest's kernel: read-only. */
	const char *ro[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
	for (size_t i = 0; i < sizeof ro / sizeof *ro; i++) {
		int fd = openat(proc, ro[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		char what[64];
		snprintf(what, sizeof what, "/proc/%s", ro[i]);
		int rc = bind_ro(proc, ro[i], fd, what);
		close(fd);
		if (rc) {
			close(proc);
			return -1;
		}
	}
	close(proc);
	return 0;
}

static int stage_count;

/* Show `data` read-only at the guest path (a mask's content or a file the host shares). */
static int show_file(int rootfd, int stage, const char *path, const char *data, size_t len)
{
	char name[32];
	snprintf(name, sizeof name, "f%d", stage_count++);
	int fd = openat(stage, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, data, len)) {
		if (fd >= 0)
			close(fd);
		return fail("cannot stage the content of %s: %s", path, strerror(errno));
	}
	close(fd);
	int target = walk(rootfd, path, 1, 1);
	if (target < 0) {
		/* A read-only share where the file does not exist: nothing to hide there. */
		if (errno == EROFS) {
			run_error[0] = 0;
			return 0;
		}
		return -1;
	}
	int rc = bind_ro(stage, name, target, path);
	close(target);
	return rc;
}

static int build_root(void)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return fail("cannot make the run's mounts private: %s", strerror(errno));
	int rootfd = open("/newroot", O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (rootfd < 0 || fstat(rootfd, &st))
		return fail("the disk is not mounted");
	disk_dev = st.st_dev;
	if (req.hostname)
		sethostname(req.hostname, strlen(req.hostname));
	trace("run-init: building the root");
	if (make_proc(rootfd) ||
	    mount_at(rootfd, "/sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) ||
	    make_dev(rootfd) ||
	    mount_at(rootfd, "/tmp", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") ||
	    mount_at(rootfd, "/run", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"))
		return -1;
	if (mount("tmpfs", "/stage", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"))
		return fail("cannot mount the staging tmpfs: %s", strerror(errno));
	int stage = open("/stage", O_PATH | O_DIRECTORY | O_CLOEXEC);
	trace("run-init: system mounts done");
	for (size_t i = 0; i < req.nitems; i++) {
		struct item *it = &req.items[i];
		int rc = 0;
		if (it->kind == ITEM_SHARE) {
			unsigned long flags = MS_NOSUID | MS_NODEV | (it->ro ? MS_RDONLY : 0);
			rc = mount_at(rootfd, it->path, it->tag, "virtiofs", flags, NULL);
		} else if (it->kind == ITEM_FILE) {
			rc = show_file(rootfd, stage, it->path, it->data, it->len);
		} else {
			rc = mount_at(rootfd, it->path, "masked", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555,size=4k");
		}
		if (rc)
			return -1;
	}
	if (want_net) {
		static const char resolv[] = "nameserver 10.0.2.3\n";
		int etc = walk(rootfd, "/etc", 0, 1);
		struct stat rs;
		if (etc >= 0 && fstatat(etc, "resolv.conf", &rs, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(rs.st_mode))
			show_file(rootfd, stage, "/etc/resolv.conf", resolv, sizeof resolv - 1);
		if (etc >= 0)
			close(etc);
	}
	close(stage);
	trace("run-init: shares and files done");
	if (chdir("/newroot") || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir("/"))
		return fail("cannot enter the run's root: %s", strerror(errno));
	close(rootfd);
	return 0;
}

/* ------------------------------------------------------------------ run-init and the agent */

struct run {
	int active;
	pid_t init_pid;
	int status_fd;    /* from run-init: 'W'+text, 'E'+text, 'X'+code */
	int in_w;         /* the agent's stdin */
	int out_r, err_r; /* the agent's stdout, stderr */
	int reaped, code, killed;
	long long in_left; /* stdin bytes still to come from the port */
	int in_synced;
	unsigned char scan[TOKEN_LEN * 2];
	size_t scan_len;
	long long out_n, err_n;
	struct buf in, out, err;
	char status_text[2048];
	size_t status_len;
};
static struct run run;

static void put_line(struct buf *b, const char *line);
static struct buf ctl_out;

static void send_hex(char type, const char *text)
{
	size_t n = strlen(text);
	if (n > 4000)
		n = 4000;
	char *line = xmalloc(2 * n + 4);
	line[0] = type;
	line[1] = ' ';
	hex_into(line + 2, text, n);
	put_line(&ctl_out, line);
	free(line);
}

static void agent_child(int sync_r, int sync_w, int in_r, int out_w, int err_w)
{
	char c;
	setsid();
	if (unshare(CLONE_NEWUSER) || write(sync_w, "U", 1) != 1 || read(sync_r, &c, 1) != 1 || c != 'M') {
		dprintf(err_w, "nanoclaw: cannot enter the run's user namespace: %s\n", strerror(errno));
		_exit(125);
	}
	if (unshare(CLONE_NEWNS)) {
		dprintf(err_w, "nanoclaw: cannot lock the run's mounts: %s\n", strerror(errno));
		_exit(125);
	}
	dup2(in_r, 0);
	dup2(out_w, 1);
	dup2(err_w, 2);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	const char *wd = req.workdir ? req.workdir : "/";
	if (chdir(wd)) {
		dprintf(2, "nanoclaw: cannot change to the working folder %s in the guest: %s\n", wd, strerror(errno));
		_exit(126);
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	umask(022);
	environ = req.env.v ? req.env.v : (char *[]){NULL};
	if (!req.argv.n) {
		dprintf(2, "nanoclaw: empty command\n");
		_exit(127);
	}
	execvp(req.argv.v[0], req.argv.v);
	int err = errno;
	if ((err == ENOENT || err == ENOTDIR) && req.notfound)
		dprintf(2, "%s\n", req.notfound);
	else
		dprintf(2, "nanoclaw: cannot run %s in the guest: %s\n", req.argv.v[0], strerror(err));
	_exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
}

static void write_status(int fd, char type, const char *text)
{
	char buf[1100];
	int n = snprintf(buf, sizeof buf, "%c%s\n", type, text);
	if (n > (int)sizeof buf - 1)
		n = sizeof buf - 1;
	write_all(fd, buf, n);
}

static void run_init(int status_w, int in_r, int out_w, int err_w)
{
	if (build_root()) {
		write_status(status_w, 'E', run_error);
		_exit(125);
	}
	for (size_t i = 0; i < warnings.n; i++)
		write_status(status_w, 'W', warnings.v[i]);
	int to_child[2], from_child[2];
	if (pipe2(to_child, O_CLOEXEC) || pipe2(from_child, O_CLOEXEC)) {
		write_status(status_w, 'E', "cannot make pipes");
		_exit(125);
	}
	trace("run-init: root ready");
	pid_t agent = fork();
	if (agent == 0) {
		close(status_w);
		agent_child(to_child[0], from_child[1], in_r, out_w, err_w);
	}
	close(in_r);
	close(out_w);
	close(err_w);
	close(to_child[0]);
	close(from_child[1]);
	char c = 0, map[64];
	if (agent > 0 && read(from_child[0], &c, 1) == 1 && c == 'U') {
		snprintf(map, sizeof map, "/proc/%d/uid_map", agent);
		int ok = write_file(map, "0 0 65536") == 0;
		snprintf(map, sizeof map, "/proc/%d/gid_map", agent);
		ok = ok && write_file(map, "0 0 65536") == 0;
		if (!ok || write(to_child[1], "M", 1) != 1)
			kill(agent, SIGKILL);
	}
	close(to_child[1]);
	close(from_child[0]);
	int code = 125;
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0)
			break;
		if (p == agent) {
			trace("run-init: agent ended");
			code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			break;
		}
	}
	/* The run's end: every process it left is killed (and reaped: orphans come to us)
	   before its status is reported; the mounts go when this process exits. */
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
	}
	char text[16];
	snprintf(text, sizeof text, "%d", code);
	write_status(status_w, 'X', text);
	_exit(0);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int start_run(void)
{
	int status[2], in[2], out[2], err[2];
	if (pipe2(status, O_CLOEXEC) || pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
		send_hex('E', "cannot make the run's pipes");
		return -1;
	}
	pid_t pid = syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		for (int i = 0; i < 4; i++)
			close(ports[i].fd);
		close(status[0]);
		close(in[1]);
		close(out[0]);
		close(err[0]);
		run_init(status[1], in[0], out[1], err[1]);
	}
	close(status[1]);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (pid < 0) {
		close(status[0]);
		close(in[1]);
		close(out[0]);
		close(err[0]);
		char msg[200];
		snprintf(msg, sizeof msg, "cannot start the run: %s", strerror(errno));
		send_hex('E', msg);
		return -1;
	}
	run.active = 1;
	run.init_pid = pid;
	run.status_fd = status[0];
	run.in_w = in[1];
	run.out_r = out[0];
	run.err_r = err[0];
	fcntl(run.in_w, F_SETFL, O_NONBLOCK);
	fcntl(run.out_r, F_SETFL, O_NONBLOCK);
	fcntl(run.err_r, F_SETFL, O_NONBLOCK);
	fcntl(run.status_fd, F_SETFL, O_NONBLOCK);
	run.reaped = run.killed = 0;
	run.code = -1;
	run.in_left = req.stdin_len;
	run.in_synced = 0;
	run.scan_len = 0;
	run.out_n = run.err_n = 0;
	run.status_len = 0;
	buf_init(&run.in);
	buf_init(&run.out);
	buf_init(&run.err);
	buf_put(&run.out, req.token, TOKEN_LEN);
	buf_put(&run.err, req.token, TOKEN_LEN);
	if (run.in_left == 0)
		close_fd(&run.in_w);
	char line[64];
	snprintf(line, sizeof line, "s %d", pid);
	put_line(&ctl_out, line);
	trace("run started (run-init %d)", pid);
	return 0;
}

static void reap(void)
{
	int st;
	pid_t p;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (run.active && p == run.init_pid)
			run.reaped = 1;
	}
}

/* End the run at once (its host went away, or a new host session began). */
static void abort_run(void)
{
	if (!run.active)
		return;
	kill(run.init_pid, SIGKILL);
	while (!run.reaped) {
		int st;
		pid_t p = waitpid(run.init_pid, &st, 0);
		if (p == run.init_pid || (p < 0 && errno != EINTR))
			run.reaped = 1;
	}
	close_fd(&run.status_fd);
	close_fd(&run.in_w);
	close_fd(&run.out_r);
	close_fd(&run.err_r);
	run.active = 0;
	trace("run aborted");
}

/* ------------------------------------------------------------------ control lines */

static long long deadline;
static long long keep_warm = -1;
static long long last_host;
static int connected;
static int power_after_flush;
static char *line_buf;
static size_t line_len;
static int discarding;
static int session;

static void put_line(struct buf *b, const char *line)
{
	size_t n = strlen(line);
	if (buf_room(b) < n + 1)
		return; /* the host reads ctl all the time: only a dead host fills it */
	memcpy(b->d + b->w, line, n);
	b->d[b->w + n] = '\n';
	b->w += n + 1;
}

static void handle_line(char *line)
{
	char *args = strchr(line, ' ');
	char type = line[0];
	if (args)
		*args++ = 0;
	else
		args = "";
	if (!type)
		return;
	if (type == 'H') {
		abort_run();
		req_free();
		session = 1;
		char out[200];
		snprintf(out, sizeof out, "h %s %lld", args, now_ms());
		put_line(&ctl_out, out);
		return;
	}
	if (!session)
		return; /* left over from a host that went away */
	if (type == 'Q') {
		abort_run();
		power_off(1);
	}
	if (type == 'K') {
		if (run.active) {
			run.killed = 1;
			kill(run.init_pid, SIGKILL);
		}
		return;
	}
	if (type == 'R') {
		req_free();
		char tok[64];
		if (sscanf(args, "%40s %lld %lld", tok, &req.stdin_len, &req.keep_warm) != 3 || strlen(tok) != 2 * TOKEN_LEN) {
			send_hex('E', "malformed run request");
			return;
		}
		char *t = unhex(tok, NULL);
		if (!t)
			return;
		memcpy(req.token, t, TOKEN_LEN);
		free(t);
		req.building = 1;
		return;
	}
	if (!req.building)
		return;
	size_t len = 0;
	char *a = NULL, *b = NULL, *c = NULL;
	switch (type) {
	case 'a':
	case 'e':
		if ((a = unhex(args, &len)))
			strv_add(type == 'a' ? &req.argv : &req.env, a);
		break;
	case 'w':
		free(req.workdir);
		req.workdir = unhex(args, &len);
		break;
	case 'n':
		free(req.hostname);
		req.hostname = unhex(args, &len);
		break;
	case 'c':
		free(req.notfound);
		req.notfound = unhex(args, &len);
		break;
	case 'm': { /* m TAG ro|rw HEXPATH */
		char tag[64], mode[8], hex[8192];
		if (sscanf(args, "%63s %7s %8191s", tag, mode, hex) == 3 && (b = unhex(hex, &len))) {
			struct item *it = req_item();
			it->kind = ITEM_SHARE;
			it->tag = xstrdup(tag);
			it->ro = !strcmp(mode, "ro");
			it->path = b;
		}
		break;
	}
	case 'f': /* f HEXPATH HEXDATA */
	case 'd': {
		char *sp = strchr(args, ' ');
		if (sp)
			*sp++ = 0;
		if ((b = unhex(args, &len))) {
			struct item *it = req_item();
			it->kind = type == 'f' ? ITEM_FILE : ITEM_DIR;
			it->path = b;
			if (type == 'f') {
				c = unhex(sp ? sp : "", &it->len);
				it->data = c ? c : xstrdup("");
				if (!c)
					it->len = 0;
			}
		}
		break;
	}
	case 'g':
		req.building = 0;
		if (run.active) {
			send_hex('E', "a run is already in progress");
			return;
		}
		keep_warm = req.keep_warm;
		start_run();
		break;
	}
}

static void feed_ctl(const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = data[i];
		if (ch == '\n') {
			if (!discarding) {
				line_buf[line_len] = 0;
				handle_line(line_buf);
			}
			discarding = 0;
			line_len = 0;
			continue;
		}
		if (discarding)
			continue;
		if (line_len >= MAX_LINE) {
			discarding = 1;
			send_hex('E', "control line too long");
			continue;
		}
		line_buf[line_len++] = ch;
	}
}

static void end_session(void)
{
	abort_run();
	req_free();
	connected = 0;
	session = 0;
	line_len = 0;
	discarding = 0;
	ctl_out.r = ctl_out.w = 0;
	deadline = now_ms() + (keep_warm >= 0 ? keep_warm : 0);
	if (power_after_flush)
		power_off(1);
	trace("host went away");
}

/* ------------------------------------------------------------------ power */

static void power_off(int clean)
{
	trace("powering off (%s)", clean ? "idle" : "error");
	if (run.active)
		abort_run();
	sync();
	if (disk_mounted && umount2("/newroot", 0) != 0) {
		mount(NULL, "/newroot", NULL, MS_REMOUNT | MS_RDONLY, NULL);
		sync();
	}
	if (clean && ioperm(EXIT_PORT, 4, 1) == 0)
		outb(EXIT_CLEAN, EXIT_PORT);
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* ------------------------------------------------------------------ the loop */

/* Move stdin bytes from the port to the agent: the token first, then exactly in_left bytes. */
static void pump_stdin(void)
{
	unsigned char tmp[65536];
	size_t room = buf_room(&run.in);
	size_t want = sizeof tmp < room ? sizeof tmp : room;
	if (run.in_synced && (long long)want > run.in_left)
		want = run.in_left;
	if (!want)
		return;
	ssize_t n = read(ports[P_IN].fd, tmp, want);
	if (n <= 0)
		return;
	size_t off = 0;
	if (!run.in_synced) {
		/* Discard what a host that went away left, up to this run's token. */
		for (; off < (size_t)n; off++) {
			if (run.scan_len == TOKEN_LEN) {
				memmove(run.scan, run.scan + 1, TOKEN_LEN - 1);
				run.scan_len--;
			}
			run.scan[run.scan_len++] = tmp[off];
			if (run.scan_len == TOKEN_LEN && !memcmp(run.scan, req.token, TOKEN_LEN)) {
				run.in_synced = 1;
				off++;
				break;
			}
		}
		if (!run.in_synced)
			return;
	}
	size_t rest = n - off;
	if ((long long)rest > run.in_left)
		rest = run.in_left;
	if (run.in_w >= 0) {
		memcpy(run.in.d + run.in.w, tmp + off, rest);
		run.in.w += rest;
	}
	run.in_left -= rest;
}

static void pump_out(int *fd, struct buf *b, long long *count)
{
	size_t room = buf_room(b);
	if (!room)
		return;
	ssize_t n = read(*fd, b->d + b->w, room);
	if (n > 0) {
		b->w += n;
		*count += n;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		close_fd(fd);
	}
}

static void flush_to(int fd, struct buf *b)
{
	while (buf_len(b)) {
		ssize_t n = write(fd, b->d + b->r, buf_len(b));
		if (n <= 0)
			return;
		b->r += n;
	}
}

static void read_status(void)
{
	char tmp[4096];
	ssize_t n = read(run.status_fd, tmp, sizeof tmp);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close_fd(&run.status_fd);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (tmp[i] != '\n') {
			if (run.status_len < sizeof run.status_text - 1)
				run.status_text[run.status_len++] = tmp[i];
			continue;
		}
		run.status_text[run.status_len] = 0;
		run.status_len = 0;
		char type = run.status_text[0];
		if (type == 'X')
			run.code = atoi(run.status_text + 1);
		else if (type == 'E' || type == 'W')
			send_hex(type, run.status_text + 1);
	}
}

static void finish_run_if_done(void)
{
	/* run-init reports 'X' once every process of the run is gone; or it was killed. */
	if (!run.active || (run.code < 0 && !run.reaped) || run.out_r >= 0 || run.err_r >= 0)
		return;
	if (buf_len(&run.out) || buf_len(&run.err))
		return;
	int code = run.code;
	if (code < 0)
		code = run.killed ? 137 : 125;
	char line[128];
	snprintf(line, sizeof line, "x %d %lld %lld", code, run.out_n, run.err_n);
	put_line(&ctl_out, line);
	close_fd(&run.in_w);
	close_fd(&run.status_fd);
	run.active = 0;
	/* The host reads the result now: give it its lease from here, however long the run took. */
	last_host = now_ms();
	deadline = now_ms() + keep_warm;
	if (keep_warm == 0)
		power_after_flush = 1;
	trace("run ended: %d, %lld + %lld bytes", code, run.out_n, run.err_n);
}

static int host_connected(void)
{
	struct pollfd p = {.fd = ports[P_CTL].fd, .events = POLLIN};
	if (poll(&p, 1, 0) < 0)
		return 0;
	return !(p.revents & POLLHUP);
}

static void serve(int sigfd)
{
	line_buf = xmalloc(MAX_LINE + 1);
	buf_init(&ctl_out);
	deadline = now_ms() + idle_ms_boot;
	last_host = now_ms();
	connected = host_connected();
	for (;;) {
		struct pollfd pf[10];
		int n = 0, i_sig, i_ctl = -1, i_in = -1, i_inw = -1, i_out = -1, i_outp = -1, i_err = -1, i_errp = -1, i_st = -1;
		pf[i_sig = n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
		if (connected) {
			pf[i_ctl = n++] = (struct pollfd){.fd = ports[P_CTL].fd, .events = POLLIN | (buf_len(&ctl_out) ? POLLOUT : 0)};
			if (run.active) {
				if (run.in_left > 0 && buf_room(&run.in) > 0)
					pf[i_in = n++] = (struct pollfd){.fd = ports[P_IN].fd, .events = POLLIN};
				if (buf_len(&run.out))
					pf[i_outp = n++] = (struct pollfd){.fd = ports[P_OUT].fd, .events = POLLOUT};
				if (buf_len(&run.err))
					pf[i_errp = n++] = (struct pollfd){.fd = ports[P_ERR].fd, .events = POLLOUT};
			}
		}
		if (run.active) {
			if (run.in_w >= 0 && buf_len(&run.in))
				pf[i_inw = n++] = (struct pollfd){.fd = run.in_w, .events = POLLOUT};
			if (run.out_r >= 0 && buf_room(&run.out))
				pf[i_out = n++] = (struct pollfd){.fd = run.out_r, .events = POLLIN};
			if (run.err_r >= 0 && buf_room(&run.err))
				pf[i_err = n++] = (struct pollfd){.fd = run.err_r, .events = POLLIN};
			if (run.status_fd >= 0)
				pf[i_st = n++] = (struct pollfd){.fd = run.status_fd, .events = POLLIN};
		}
		int timeout = -1;
		if (!run.active) {
			long long until = deadline;
			if (connected && last_host + LEASE_MS > until)
				until = last_host + LEASE_MS;
			long long left = until - now_ms();
			if (left <= 0)
				power_off(1);
			timeout = left > 60000 ? 60000 : (int)left;
		}
		if (poll(pf, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			fatal("poll failed");
		}
		if (pf[i_sig].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof si) == sizeof si) {
			}
			reap();
			if (!connected && host_connected()) {
				connected = 1;
				last_host = now_ms();
				trace("host connected");
			}
		}
		if (i_ctl >= 0) {
			short re = pf[i_ctl].revents;
			if (re & POLLIN) {
				char tmp[65536];
				ssize_t got = read(ports[P_CTL].fd, tmp, sizeof tmp);
				if (got > 0) {
					last_host = now_ms();
					feed_ctl(tmp, got);
				}
			}
			if (re & POLLOUT)
				flush_to(ports[P_CTL].fd, &ctl_out);
			if (re & POLLHUP) {
				end_session();
				continue;
			}
			/* keepWarm 0 powers off once the host has read the result: on its 'Q', or
			 * when it goes away; never right after writing the result, which could
			 * still be on its way to the host. */
		}
		if (!run.active)
			continue;
		if (i_in >= 0 && (pf[i_in].revents & (POLLIN | POLLHUP)))
			pump_stdin();
		if (i_inw >= 0 && (pf[i_inw].revents & (POLLOUT | POLLERR | POLLHUP))) {
			flush_to(run.in_w, &run.in);
			if (pf[i_inw].revents & (POLLERR | POLLHUP))
				close_fd(&run.in_w); /* the agent closed its stdin */
		}
		if (run.in_w >= 0 && run.in_synced && run.in_left == 0 && !buf_len(&run.in))
			close_fd(&run.in_w);
		if (run.in_w < 0)
			run.in.r = run.in.w = 0; /* nobody reads it any more: drop what is left */
		if (i_out >= 0 && (pf[i_out].revents & (POLLIN | POLLHUP | POLLERR)))
			pump_out(&run.out_r, &run.out, &run.out_n);
		if (i_err >= 0 && (pf[i_err].revents & (POLLIN | POLLHUP | POLLERR)))
			pump_out(&run.err_r, &run.err, &run.err_n);
		if (i_outp >= 0 && (pf[i_outp].revents & POLLOUT))
			flush_to(ports[P_OUT].fd, &run.out);
		if (i_errp >= 0 && (pf[i_errp].revents & POLLOUT))
			flush_to(ports[P_ERR].fd, &run.err);
		if (i_st >= 0 && (pf[i_st].revents & (POLLIN | POLLHUP)))
			read_status();
		finish_run_if_done();
	}
}

int main(void)
{
	umask(0);
	signal(SIGPIPE, SIG_IGN);
	boot();
	find_ports();
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0)
		fatal("signalfd failed");
	run.status_fd = run.in_w = run.out_r = run.err_r = -1;
	printf("%s\n", BOOTED);
	fflush(stdout);
	serve(sigfd);
	return 0;
}
