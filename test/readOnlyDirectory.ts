/**
 * Permission faults. Root ignores permission bits, so when the tests run as root the CLI is spawned as the
 * unprivileged user `nobody` (uid 65534): `chmod` then applies to it, and the end-to-end tests always run. That user
 * must be able to read the repository and run node; a probe proves it (and fails loudly otherwise).
 *
 * In-process tests (which cannot change their user) use `lockMethod`: `chmod` for ordinary users, the immutable
 * attribute (`chattr +i`) for root.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** True when a file can be created (and removed) in `dir` by this process. */
export const canWrite = (dir: string): boolean => {
  const probe = path.join(dir, ".quarry-probe")
  try {
    fs.writeFileSync(probe, "")
    fs.rmSync(probe)
    return true
  } catch {
    return false
  }
}

const root = process.getuid?.() === 0

/** The user the CLI runs as when a test needs permissions to apply: `nobody` under root, else this user. */
export const unprivileged: { readonly uid?: number } = root ? { uid: 65534 } : {}

/** Fails loudly when the unprivileged user cannot run the built CLI (it must read the repository and node). */
export const assertUnprivilegedCanRun = (): void => {
  const bin = path.resolve(import.meta.dirname, "../packages/cli/dist/bin.js")
  const probe = spawnSync(process.execPath, [bin, "--version"], {
    ...(unprivileged.uid === undefined ? {} : { uid: unprivileged.uid, gid: unprivileged.uid }),
    cwd: "/",
    encoding: "utf8"
  })
  if (probe.status !== 0) {
    throw new Error(
      `the unprivileged user (uid ${unprivileged.uid}) cannot run ${bin} (exit ${probe.status}, ` +
        `${probe.error ?? probe.stderr}); make the repository and node readable by all users`
    )
  }
}

/** Hands `dir` (and what is in it) to the unprivileged user, and lets it reach `dir` through its parents. */
export const giveToUnprivileged = (dir: string): void => {
  fs.chmodSync(dir, 0o755)
  if (unprivileged.uid === undefined) return
  const own = (file: string) => {
    fs.chownSync(file, unprivileged.uid!, unprivileged.uid!)
    if (fs.statSync(file).isDirectory()) { for (const name of fs.readdirSync(file)) own(path.join(file, name)) }
  }
  own(dir)
}

/** True when the unprivileged user cannot create a file in `dir` (checked as that user). */
export const unprivilegedCanWrite = (dir: string): boolean =>
  spawnSync(process.execPath, ["-e", `require("fs").writeFileSync(${JSON.stringify(path.join(dir, ".probe"))}, "")`], {
      ...(unprivileged.uid === undefined ? {} : { uid: unprivileged.uid, gid: unprivileged.uid }),
      cwd: "/"
    }).status === 0 && (fs.rmSync(path.join(dir, ".probe"), { force: true }), true)

/** Makes `dir` read-only (or writable again) for the unprivileged user. */
export const setUnprivilegedReadOnly = (dir: string, readOnly: boolean): void =>
  fs.chmodSync(dir, readOnly ? 0o555 : 0o755)

/**
 * How this process can make a directory it cannot write to itself: `chmod 0555` for ordinary users; for root (which
 * ignores permission bits) the immutable attribute (`chattr +i`, which needs CAP_LINUX_IMMUTABLE and a file system
 * that supports it), else a read-only bind mount of the directory onto itself (CAP_SYS_ADMIN). Each way is proven by
 * a probe write; `undefined` when none works, which `CI=true` refuses.
 */
export const lockMethod: "chmod" | "chattr" | "bind" | undefined = (() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-lock-probe-"))
  try {
    const methods = root ? (["chattr", "bind"] as const) : (["chmod"] as const)
    for (const method of methods) {
      try {
        lock(method, dir, true)
      } catch {
        continue
      }
      const locked = !canWrite(dir)
      lock(method, dir, false)
      if (locked) return method
    }
    return undefined
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()

if (lockMethod === undefined && process.env.CI === "true") {
  throw new Error("CI=true: this process cannot make a directory read-only for itself (chmod, chattr +i, bind mount)")
}

function lock(method: "chmod" | "chattr" | "bind", dir: string, readOnly: boolean): void {
  const run = (command: string, args: ReadonlyArray<string>) => execFileSync(command, args, { stdio: "ignore" })
  switch (method) {
    case "chmod":
      return fs.chmodSync(dir, readOnly ? 0o555 : 0o755)
    case "chattr":
      return void run("chattr", [readOnly ? "+i" : "-i", dir])
    case "bind":
      if (!readOnly) return void run("umount", [dir])
      run("mount", ["--bind", dir, dir])
      try {
        return void run("mount", ["-o", "remount,bind,ro", dir])
      } catch (error) {
        run("umount", [dir])
        throw error
      }
  }
}

/** Makes `dir` read-only (or writable again) for this process, with `lockMethod`. */
export const setReadOnly = (dir: string, readOnly: boolean): void => {
  if (lockMethod !== undefined) lock(lockMethod, dir, readOnly)
}
