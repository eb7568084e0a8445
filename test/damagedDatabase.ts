import Database from "better-sqlite3"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"

/**
 * Damages the closed SQLite database `file` so that `PRAGMA quick_check` fails while the file still opens and its
 * other tables still read: adds a table spanning many pages and overwrites its root page with garbage. Returns what
 * `quick_check` says, checked on a fresh connection, so a test never relies on damage that did not happen.
 */
export const damage = (file: string): string => {
  const db = new Database(file)
  db.exec("CREATE TABLE filler (x TEXT)")
  const insert = db.prepare("INSERT INTO filler (x) VALUES (?)")
  db.transaction(() => {
    for (let i = 0; i < 2000; i++) insert.run(`${"x".repeat(200)} ${i}`)
  })()
  const pageSize = Number(db.pragma("page_size", { simple: true }))
  const root = db.prepare<[], { rootpage: number }>("SELECT rootpage FROM sqlite_master WHERE name = 'filler'").get()
  if (root === undefined) throw new Error("the filler table was not created")
  db.close()
  const fd = fs.openSync(file, "r+")
  fs.writeSync(fd, Buffer.alloc(pageSize, 0xff), 0, pageSize, (root.rootpage - 1) * pageSize)
  fs.closeSync(fd)
  const check = new Database(file, { readonly: true })
  try {
    const result = String(check.pragma("quick_check", { simple: true }))
    if (result === "ok") throw new Error(`damaging ${file} did not make quick_check fail`)
    return result
  } finally {
    check.close()
  }
}

/**
 * Leaves `file` as a process that died with it open leaves it: a child process opens it in WAL mode, writes a row
 * and kills itself with SIGKILL, so the write-ahead log stays beside the file. Returns the log's size.
 */
export const crashWhileOpen = (file: string): number => {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3")
  const script = `const Database = require(${JSON.stringify(driver)})
const db = new Database(${JSON.stringify(file)})
db.pragma("journal_mode = WAL")
db.exec("CREATE TABLE IF NOT EXISTS crash_marks (at INTEGER)")
db.prepare("INSERT INTO crash_marks (at) VALUES (?)").run(Date.now())
process.kill(process.pid, "SIGKILL")`
  const child = spawnSync(process.execPath, ["-e", script], { stdio: "ignore" })
  if (child.signal !== "SIGKILL") {
    throw new Error(`the child was meant to die of SIGKILL, it ended with ${child.status}`)
  }
  return fs.statSync(`${file}-wal`).size
}
