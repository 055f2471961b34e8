import ArgumentParser
import Foundation
import UnCLIPShapesWorld

/// `unclip data`: datasets.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Make training data.", subcommands: [Shapes.self])

    struct Shapes: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write ShapesWorld scenes: NNNNNN.png + NNNNNN.txt and scenes.jsonl (128×128, deterministic per seed).")

        @Option(help: "Number of scenes.")
        var count = 1000

        @Option(help: "World seed: scene i of seed S is the same on every machine.")
        var seed: UInt64 = 0

        @Option(help: "Output folder (created if missing).")
        var out: String

        func validate() throws {
            guard count >= 1 else { throw ValidationError("--count must be at least 1 (got \(count))") }
        }

        func run() throws {
            let bar = ProgressBar("shapes", total: count)
            try exportShapesWorld(count: count, seed: seed, to: URL(fileURLWithPath: out)) { done, _ in bar.update(done) }
            print("wrote \(count) scenes to \(out) (PNG + caption files, scenes.jsonl)")
        }
    }
}
