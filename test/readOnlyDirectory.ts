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
 * How this process can make a directory it cannot write to itself: `chmod 0555` for ordinary users, `chattr +i`
 * for root (which needs CAP_LINUX_IMMUTABLE and a file system that supports it). Proven by a probe write;
 * `undefined` when neither works.
 */
export const lockMethod: "chmod" | "chattr" | undefined = (() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-lock-probe-"))
  try {
    if (!root) {
      fs.chmodSync(dir, 0o555)
      const locked = !canWrite(dir)
      fs.chmodSync(dir, 0o755)
      return locked ? "chmod" : undefined
    }
    try {
      execFileSync("chattr", ["+i", dir], { stdio: "ignore" })
    } catch {
      return undefined
    }
    const locked = !canWrite(dir)
    execFileSync("chattr", ["-i", dir], { stdio: "ignore" })
    return locked ? "chattr" : undefined
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()

/** Makes `dir` read-only (or writable again) for this process, with `lockMethod`. */
export const setReadOnly = (dir: string, readOnly: boolean): void => {
  if (lockMethod === "chmod") fs.chmodSync(dir, readOnly ? 0o555 : 0o755)
  else if (lockMethod === "chattr") execFileSync("chattr", [readOnly ? "+i" : "-i", dir], { stdio: "ignore" })
}
