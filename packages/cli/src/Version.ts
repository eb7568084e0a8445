/**
 * The version of `@quarry/cli`, in a module of its own so that `quarry --version` loads nothing else.
 *
 * @since 0.1.0
 */

/**
 * The version `quarry --version` prints.
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"
