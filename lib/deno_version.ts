/**
 * The Deno versions this project runs on. Deno 2.9.4 to 2.9.6 abort inside nghttp2 (an assertion
 * in `find_stream_on_goaway_func`, or a segmentation fault) when a grpc-js channel receives a
 * GOAWAY, which every graceful server stop sends (denoland/deno#36788): a balancer or client on
 * them dies the first time a server it talks to restarts. Every entry refuses to start on them.
 *
 * @module
 */

/** The Deno the project is pinned to (`.ci/run`, the README's commands). */
export const PINNED_DENO_VERSION = "2.9.3";

/** Versions known to crash, and why. */
const KNOWN_BAD: Record<string, string> = {
  "2.9.4": "denoland/deno#36788",
  "2.9.5": "denoland/deno#36788",
  "2.9.6": "denoland/deno#36788",
};

/**
 * Why `version` cannot run `task` (one line naming the version to use and the command), or
 * `undefined` when it can.
 */
export function denoVersionProblem(version: string, task: string): string | undefined {
  const issue = KNOWN_BAD[version];
  if (issue === undefined) return undefined;
  return `Cannot start ${task} on Deno ${version}, which aborts when a gRPC server closes a ` +
    `connection gracefully (GOAWAY, ${issue}): run it on Deno ${PINNED_DENO_VERSION}, as ` +
    `'npx --yes deno@${PINNED_DENO_VERSION} task ${task}'`;
}
