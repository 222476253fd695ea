// Types for examples/sandbox-probes.js (plain JS, so the benchmark loads it too).

export declare const MARKER: string;
export declare const probeSource: string;
export declare const probeScript: string;
export declare function parseProbes(log: string): Map<string, string>;
export declare function deviceNumbers(rdev: number): [number, number];
