import ArgumentParser
import Foundation
import UnCLIPImage
import UnCLIPTraining

extension Train {
    /// `unclip train chart`: training loss curves of one or more runs, compared window by window.
    struct Chart: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draw the loss curves of training runs (their loss.jsonl) as a PNG chart and compare them.",
            discussion: """
                Each curve is the mean raw loss of consecutive windows of --window steps with ± one standard error \
                (one step's loss is as noisy as its batch and timesteps), drawn over the whole run and, beside it, \
                from a quarter of the way in. With two logs a table gives each window's difference in standard \
                errors (z): two runs agree within their noise where |z| stays about ≤ 2; and, for runs of the same \
                seed (the same batches, timesteps and noise at each step), the paired difference: the mean of the \
                step-by-step differences with its own standard error, the sharper test. Example: \
                unclip train chart A/checkpoints/decoder/loss.jsonl B/checkpoints/decoder/loss.jsonl --labels fp32,bf16 --out loss.png
                """)

        @Argument(help: ArgumentHelp("Loss logs (OUT/checkpoints/STAGE/loss.jsonl).", valueName: "loss.jsonl"))
        var logs: [String]

        @Option(help: ArgumentHelp("The PNG to write.", valueName: "file"))
        var out: String

        @Option(help: ArgumentHelp("Comma-separated names of the curves (default: each log's precision and folder).", valueName: "a,b"))
        var labels: String?

        @Option(help: "Steps per window.")
        var window = 100

        @Option(help: "The chart's title.")
        var title = "training loss"

        func validate() throws {
            guard !logs.isEmpty else { throw ValidationError("name at least one loss log") }
            guard logs.count <= LineChart.palette.count else {
                throw ValidationError("at most \(LineChart.palette.count) logs fit one chart (got \(logs.count))")
            }
            guard window >= 2 && window <= 1_000_000 else { throw ValidationError("--window must be 2 … 1000000 steps (got \(window))") }
            if let labels, labels.split(separator: ",", omittingEmptySubsequences: false).count != logs.count {
                throw ValidationError("--labels names \(labels.split(separator: ",", omittingEmptySubsequences: false).count) curves but \(logs.count) logs were given")
            }
        }

        func run() throws {
            let url = URL(fileURLWithPath: out)
            try ImageFiles.checkWritable(url)
            let runs = try logs.map { try LossLog.read(URL(fileURLWithPath: $0)) }
            let names = labels.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
                ?? zip(logs, runs).map { path, records in
                    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().deletingLastPathComponent()
                        .deletingLastPathComponent().lastPathComponent
                    return "\(records.last!.precision) (\(folder))"
                }
            let windows = runs.map { LossLog.windows($0, size: window) }
            guard windows.allSatisfy({ !$0.isEmpty }) else {
                throw ValidationError("a log has no window of \(window) steps with two or more records: lower --window")
            }
            let lastStep = runs.map { $0.last!.step }.max()!
            func chart(from first: Int, _ heading: String) -> RGBImage {
                let series = windows.enumerated().map { k, ws in
                    LineChart.Series(name: names[k], color: LineChart.palette[k],
                                     points: ws.filter { $0.firstStep > first }.map {
                                         LineChart.Point(x: Double($0.lastStep), y: $0.mean, error: $0.standardError)
                                     })
                }
                return LineChart(title: heading, xLabel: "step", yLabel: "loss (mean of \(window) steps)", series: series,
                                 width: 480, height: 320).render()
            }
            let quarter = (lastStep / 4 / window) * window
            let image = RGBImage.grid([chart(from: 0, title), chart(from: quarter, "\(title), from step \(quarter + 1)")],
                                      columns: 2, padding: 8)
            try image.writePNG(to: url)

            print("steps        " + names.map { $0.padding(toLength: 24, withPad: " ", startingAt: 0) }.joined()
                  + (runs.count == 2 ? "difference (z)       paired difference (z)" : ""))
            let paired = runs.count == 2 ? Self.pairedDifferences(runs[0], runs[1]) : []
            let pairedWindows = LossLog.windows(paired, size: window)
            let steps = Set(windows.flatMap { $0.map(\.firstStep) }).sorted()
            var largest = 0.0
            for first in steps {
                let row = windows.map { ws in ws.first { $0.firstStep == first } }
                var line = "\(first)–\(first + window - 1)".padding(toLength: 13, withPad: " ", startingAt: 0)
                for w in row {
                    line += (w.map { String(format: "%.5f ± %.5f", $0.mean, $0.standardError) } ?? "–")
                        .padding(toLength: 24, withPad: " ", startingAt: 0)
                }
                if runs.count == 2, let a = row[0], let b = row[1] {
                    let z = (b.mean - a.mean) / max((a.standardError * a.standardError + b.standardError * b.standardError).squareRoot(), 1e-12)
                    line += String(format: "%+.5f (%+.1f)", b.mean - a.mean, z).padding(toLength: 21, withPad: " ", startingAt: 0)
                    largest = max(largest, abs(z))
                    if let d = pairedWindows.first(where: { $0.firstStep == first }) {
                        line += String(format: "%+.5f ± %.5f (%+.1f)", d.mean, d.standardError, d.mean / max(d.standardError, 1e-12))
                    }
                }
                print(line)
            }
            if runs.count == 2 {
                print(String(format: "largest |z| over the windows: %.1f", largest))
                // Every difference filed under step 1: one window over the whole run.
                let everyStep = paired.map { LossRecord(step: 1, loss: $0.loss, smoothedLoss: $0.loss) }
                if let d = LossLog.windows(everyStep, size: 2).first {
                    print(String(format: "paired difference over all %d common steps: %+.5f ± %.5f (%+.1f standard errors)",
                                 paired.count, d.mean, d.standardError, d.mean / max(d.standardError, 1e-12)))
                }
            }
            print("chart in \(out)")
        }

        /// Second minus first loss at each step both logs hold, as records (in step order).
        static func pairedDifferences(_ a: [LossRecord], _ b: [LossRecord]) -> [LossRecord] {
            let first = Dictionary(a.map { ($0.step, $0.loss) }, uniquingKeysWith: { $1 })
            return b.compactMap { r -> LossRecord? in
                guard let loss = first[r.step] else { return nil }
                return LossRecord(step: r.step, loss: r.loss - loss, smoothedLoss: r.loss - loss)
            }
        }
    }
}
