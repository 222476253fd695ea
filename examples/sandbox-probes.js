// The RUN sandbox probes of issue 27, shared by test/cli/sandbox-attacks.test.ts and
// bench/sandbox-probes.js (which runs them under BuildKit too, for the column to compare with).
// Plain JS so the benchmark loads it as it is; types in sandbox-probes.d.ts.

/** What a hostile Dockerfile would read off the host's disk if a step could open its block device. */
export const MARKER = 'STRATUM-HOST-DEVICE-CONTENT';

/**
 * A static probe for system calls busybox has no applet for: prints `ok`, `EPERM` or the error.
 * Built with the machine's gcc (`gcc -static`), so it runs on any base.
 */
export const probeSource = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long r = -1;
  if (argc < 2) return 2;
  if (!strcmp(argv[1], "keyctl")) r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1);
  else if (!strcmp(argv[1], "unshare")) r = unshare(CLONE_NEWUSER);
  else if (!strcmp(argv[1], "unshare-mount")) r = unshare(CLONE_NEWNS);
  else if (!strcmp(argv[1], "mount")) r = mount("none", "/tmp", "tmpfs", 0, 0);
  printf("%s\n", r >= 0 ? "ok" : (errno == EPERM ? "EPERM" : strerror(errno)));
  return 0;
}
`;

/**
 * One step's probes; every line is `PROBE <uid> <probe> <outcome>`. The step needs MAJOR and
 * MINOR (the host device's numbers), /probe (the binary above) and, for `shipped-device`, a node
 * for that device at /host-disk in its base.
 */
export const probeScript = `set +e
who=$(id -u)
say() { echo "PROBE $who $1 $2"; }
say seccomp "$(grep '^Seccomp:' /proc/self/status | tr -dc 0-9)"
v=$(cat /proc/sys/vm/overcommit_ratio)
if (echo "$v" > /proc/sys/vm/overcommit_ratio) 2>/dev/null; then say proc-sys written; else say proc-sys refused; fi
if [ -e /proc/sysrq-trigger ]; then
  say sysrq "$(awk '$5 == "/proc/sysrq-trigger" { split($6, o, ","); print o[1] }' /proc/self/mountinfo)"
else say sysrq ro; fi
masked=0
for f in kcore keys timer_list sched_debug interrupts; do
  [ -e /proc/$f ] && masked=$((masked + $(head -c 4096 /proc/$f 2>/dev/null | wc -c)))
done
say masked-proc "$masked"
say firmware "$(ls /sys/firmware 2>/dev/null | wc -l)"
rm -f /tmp/made
mknod /tmp/made b "$MAJOR" "$MINOR" 2>/dev/null
say made-device "$(head -c ${MARKER.length} /tmp/made 2>/dev/null || echo refused)"
rm -f /tmp/made
say shipped-device "$(head -c ${MARKER.length} /host-disk 2>/dev/null || echo refused)"
for call in keyctl unshare unshare-mount mount; do say "$call" "$(/probe "$call")"; done
say dev-null "$(echo fine > /dev/null && echo writable)"
`;

/** `PROBE <uid> <probe> <outcome>` lines of a build log, as a map from `<uid> <probe>`. */
export function parseProbes(log) {
  const found = new Map();
  for (const match of log.matchAll(/PROBE (\d+) (\S+) ?(.*)$/gm))
    found.set(`${match[1]} ${match[2]}`, match[3].trim());
  return found;
}

/** Major and minor of a device number as Linux (glibc's makedev) encodes them. */
export function deviceNumbers(rdev) {
  return [Math.floor(rdev / 256) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00)];
}
