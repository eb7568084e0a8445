/**
 * The `RunStore` on SQLite: the SQL store (`SqlRunStore`) over a SQLite `Database` (`Database.layer`). Kept as the
 * name SQLite users and tests import.
 *
 * @since 0.1.0
 */
import * as SqlRunStore from "./SqlRunStore.js"

/**
 * Outputs larger than this many bytes of JSON are stored deflated.
 *
 * @since 0.1.0
 * @category constants
 */
export const compressAbove: number = SqlRunStore.compressAbove

/**
 * Test-only hooks into the commit transaction.
 *
 * @since 0.1.0
 * @category models
 */
export type Hooks = SqlRunStore.Hooks

/**
 * Builds the store on the `Database` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = SqlRunStore.make

/**
 * The store as a layer over the validated `Database` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = SqlRunStore.layer
