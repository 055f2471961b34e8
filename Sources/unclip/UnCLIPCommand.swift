import ArgumentParser
import UnCLIPModels

/// The `unclip` command-line tool.
@main
struct UnCLIPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unclip",
        abstract: "unCLIP (DALL·E 2) in Swift: text → CLIP → prior → decoder → super-resolution.",
        discussion: """
            Run `unclip selftest` to check the tensor engine on this machine, and `unclip bench ops` for \
            op timings that join with `peer_torch.py ops` (PyTorch on the same CPU).
            """,
        subcommands: [Generate.self, Vary.self, Inspect.self, DataCommand.self, Train.self, Evaluate.self, SelfTest.self, Bench.self])
}

/// Benchmarks that print one JSON line per measurement.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks printing JSON lines ({name, median_s, min_s, max_s, ...}).",
        subcommands: [Ops.self])

    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Op timings with the same names as `peer_torch.py ops`, for side-by-side ratios.")

        @Option(help: "Timed repetitions per op (after one warm-up).")
        var reps = 5

        @Option(help: "Threads for the engine and oneDNN (sets OMP_NUM_THREADS semantics for this run).")
        var threads = 2

        func validate() throws {
            guard reps >= 1 else { throw ValidationError("--reps must be at least 1 (got \(reps))") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1 (got \(threads))") }
        }

        func run() throws { try runOpsBenchmark(reps: reps, threads: threads) }
    }
}
