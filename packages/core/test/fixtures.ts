import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Database from "@quarry/core/Database"
import * as Extractor from "@quarry/core/Extractor"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A temporary directory removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "quarry-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A real SQLite file with the store, plus the given extractors (default: capitalized). */
export const storeLayer = (
  filename: string,
  extractors: ReadonlyArray<Extractor.Extractor> = [CapitalizedExtractor.make()]
) =>
  Layer.mergeAll(SqliteRunStore.layer, Extractor.layerRegistry(...extractors)).pipe(
    Layer.provideMerge(Database.layer(filename))
  )

export const readText = (file: string) => fs.readFileSync(file, "utf8")

export const sharedData = (...parts: ReadonlyArray<string>) =>
  path.resolve(import.meta.dirname, "../../../../shared/data", ...parts)
