import Foundation

/// One line of a stage's loss log (`OUT/checkpoints/STAGE/loss.jsonl`, written by the training loop).
public struct LossRecord: Sendable, Equatable {
    public var step: Int
    public var loss: Double
    public var smoothedLoss: Double
    /// The arithmetic the step ran at ("fp32" or "bf16"; logs written before it was recorded say nothing: fp32).
    public var precision: String

    public init(step: Int, loss: Double, smoothedLoss: Double, precision: String = "fp32") {
        self.step = step
        self.loss = loss
        self.smoothedLoss = smoothedLoss
        self.precision = precision
    }
}

/// The mean of the raw loss over a window of steps, with its standard error (the steps' spread / √count): what two
/// runs' curves are compared by, since one step's loss is as noisy as its batch and timesteps.
public struct LossWindow: Sendable, Equatable {
    public var firstStep: Int
    public var lastStep: Int
    public var mean: Double
    public var standardError: Double
}

public enum LossLog {
    /// The records of `url`, in file order. A missing or unreadable file, or a line without `step` and `loss`, is an
    /// error naming the file and line.
    public static func read(_ url: URL) throws -> [LossRecord] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw TrainingError.io(path: url.path, reason: "cannot read the loss log (\(error.localizedDescription)); it is OUT/checkpoints/STAGE/loss.jsonl of a training run")
        }
        var records: [LossRecord] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let step = (object["step"] as? NSNumber)?.intValue, let loss = (object["loss"] as? NSNumber)?.doubleValue else {
                throw TrainingError.io(path: url.path, reason: "line \(index + 1) is not a loss record ({\"step\": …, \"loss\": …})")
            }
            let smoothed = (object["smoothed_loss"] as? NSNumber)?.doubleValue ?? loss
            records.append(LossRecord(step: step, loss: loss, smoothedLoss: smoothed,
                                      precision: object["precision"] as? String ?? "fp32"))
        }
        guard !records.isEmpty else { throw TrainingError.io(path: url.path, reason: "the loss log has no records") }
        return records
    }

    /// Consecutive windows of `size` steps (by step number: steps 1…size, size+1…2·size, …), each with the mean of
    /// its records' raw loss and its standard error; windows with fewer than two records are left out.
    public static func windows(_ records: [LossRecord], size: Int) -> [LossWindow] {
        precondition(size >= 2, "a loss window holds at least two steps")
        let byWindow = Dictionary(grouping: records) { ($0.step - 1) / size }
        return byWindow.keys.sorted().compactMap { k in
            let losses = byWindow[k]!.map(\.loss)
            guard losses.count >= 2 else { return nil }
            let mean = losses.reduce(0, +) / Double(losses.count)
            let variance = losses.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(losses.count - 1)
            return LossWindow(firstStep: k * size + 1, lastStep: (k + 1) * size, mean: mean,
                              standardError: (variance / Double(losses.count)).squareRoot())
        }
    }
}
