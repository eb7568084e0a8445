/**
 * A size-limited tmpfs mounted by the test (it needs root, or CAP_SYS_ADMIN): a real small file system to fill.
 * Where mounting is impossible the tests that need one skip with the reason, except under `CI=true`, where they fail.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const errorText = (error: unknown) =>
  error instanceof Error && "stderr" in error && String(error.stderr).trim() !== "" ?
    String(error.stderr).trim() :
    String(error)

/** Why no tmpfs can be mounted here, or `undefined` when it can (proven by mounting one). */
export const unavailable: string | undefined = (() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-tmpfs-probe-"))
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "pipe" })
    execFileSync("umount", [dir], { stdio: "pipe" })
    return undefined
  } catch (error) {
    return `cannot mount a tmpfs (${errorText(error)}); run these tests as root to prove the disk-full behaviour`
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()

if (unavailable !== undefined) {
  if (process.env.CI === "true") throw new Error(`CI=true: ${unavailable}`)
  console.warn(`SKIPPING disk-full tests: ${unavailable}`)
}

/** A mounted tmpfs of `size` (e.g. `2m`) at a new directory. */
export interface Tmpfs {
  readonly dir: string
  /** Changes the size limit (`remount`), e.g. to free space. */
  readonly resize: (size: string) => void
  readonly unmount: () => void
}

/** Mounts a tmpfs of `size` at a new directory under `parent`. */
export const mount = (parent: string, name: string, size: string): Tmpfs => {
  const dir = path.join(parent, name)
  fs.mkdirSync(dir)
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir], { stdio: "pipe" })
  return {
    dir,
    resize: (next) => execFileSync("mount", ["-o", `remount,size=${next}`, dir], { stdio: "pipe" }),
    unmount: () => execFileSync("umount", ["--lazy", dir], { stdio: "pipe" })
  }
}
