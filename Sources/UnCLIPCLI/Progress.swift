import Foundation
import UnCLIPModels

/// A one-line terminal progress bar with elapsed time and ETA, drawn on standard error.
final class ProgressBar {
    private let label: String
    private let total: Int
    private let start = Date()
    private let interactive = isatty(fileno(stderr)) != 0
    private var lastDraw = Date.distantPast

    init(_ label: String, total: Int) { self.label = label; self.total = max(total, 1) }

    func update(_ done: Int, note: String = "") {
        let now = Date()
        guard done >= total || now.timeIntervalSince(lastDraw) > 0.1 || !interactive else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let width = 24, filled = width * done / total
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line = "\(label.padding(toLength: 16, withPad: " ", startingAt: 0)) \(bar) \(done)/\(total)  \(Self.format(elapsed)) elapsed, ETA \(Self.format(eta)) \(note)"
        if interactive {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
            if done >= total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if done >= total {
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
    }

    static func format(_ s: Double) -> String {
        s < 60 ? String(format: "%.1fs", s) : String(format: "%dm%02ds", Int(s) / 60, Int(s) % 60)
    }
}

/// Progress bars for the stages of a pipeline run.
final class StageProgress {
    private var bars: [Stage: ProgressBar] = [:]
    let quiet: Bool

    init(quiet: Bool) { self.quiet = quiet }

    func handle(_ p: PipelineProgress) -> Bool {
        guard !quiet else { return true }
        let bar = bars[p.stage] ?? ProgressBar(p.stage.description, total: p.stepCount)
        bars[p.stage] = bar
        bar.update(p.step)
        return true
    }
}
