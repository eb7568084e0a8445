import { assert, describe, it } from "@effect/vitest"
import * as Run from "@quarry/core/Run"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

const statusesWhere = (predicate: (status: Run.RunStatus) => boolean): ReadonlyArray<Run.RunStatus> =>
  Run.RunStatus.literals.filter(predicate)

describe("Run.FinishedStatus", () => {
  it("is the statuses a run ends in: every status but pending and running", () => {
    assert.deepStrictEqual(statusesWhere(Run.isFinished), ["completed", "failed", "cancelled", "interrupted"])
    assert.deepStrictEqual(statusesWhere((status) => !Run.isFinished(status)), ["pending", "running"])
  })

  it("decodes a finished status and refuses one a run is still in", () => {
    assert.strictEqual(Schema.decodeUnknownSync(Run.FinishedStatus)("interrupted"), "interrupted")
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Run.FinishedStatus)("running")))
  })
})
