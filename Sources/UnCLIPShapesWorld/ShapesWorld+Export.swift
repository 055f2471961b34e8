import Foundation
import UnCLIPImage

extension Scene {
    /// The scene's line of `scenes.jsonl` (spec §"Exported layout"), keys in the spec's order.
    public func jsonLine(file: String) -> String {
        func number(_ v: Double) -> String { String(format: "%.1f", v) }  // scene geometry is in tenths
        let objectsJSON = objects.map { o in
            "{\"shape\": \"\(o.shape.name)\", \"color\": \"\(o.color.name)\", \"size\": \"\(o.sizeClass.name)\", "
                + "\"s\": \(number(o.s)), \"cx\": \(number(o.cx)), \"cy\": \(number(o.cy))}"
        }
        return "{\"file\": \(jsonString(file)), \"caption\": \(jsonString(caption)), \"objects\": [\(objectsJSON.joined(separator: ", "))]}"
    }
}

/// `text` as a JSON string literal.
private func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}

/// Writes scenes 0..<count of `ShapesWorld(seed:)` to `directory`: `NNNNNN.png` (128 × 128) with its caption in
/// `NNNNNN.txt`, and `scenes.jsonl` with one line per image (spec §"Exported layout").
///
/// The directory is created if needed; existing files of the same names are replaced. Images are rendered,
/// encoded and written on 8 threads; `progress(done, total)` is called from one thread at a time after each batch.
public func exportShapesWorld(count: Int, seed: UInt64, to directory: URL,
                              progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws {
    guard count >= 1 else { throw ShapesWorldError.invalidCount(count) }
    do {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    } catch {
        throw ShapesWorldError.io(path: directory.path, reason: "cannot create the directory (\(error.localizedDescription))")
    }
    let world = ShapesWorld(seed: seed)
    let batch = 50
    let state = ExportState(count: count)

    // Creating a file costs far more than rendering or encoding a scene (it waits on the disk, not the CPU), so the
    // work runs on more threads than cores.
    let queue = OperationQueue()
    queue.maxConcurrentOperationCount = 8
    for start in stride(from: 0, to: count, by: batch) {
        // The batches call `progress` under the state's lock, one at a time, so it need not be Sendable.
        nonisolated(unsafe) let report = progress
        queue.addOperation {
            let range = start..<min(count, start + batch)
            var batchLines: [String] = []
            do {
                for index in range {
                    if state.failed { return }
                    let scene = world.scene(at: index)
                    let stem = String(format: "%06d", index)
                    try ShapesWorld.render(scene).writePNG(to: directory.appendingPathComponent(stem + ".png"))
                    let captionURL = directory.appendingPathComponent(stem + ".txt")
                    do { try Data((scene.caption + "\n").utf8).write(to: captionURL, options: .atomic) } catch {
                        throw ShapesWorldError.io(path: captionURL.path, reason: "cannot write the caption (\(error.localizedDescription))")
                    }
                    batchLines.append(scene.jsonLine(file: stem + ".png"))
                }
            } catch {
                state.fail(error)
                return
            }
            state.finish(range, lines: batchLines, progress: report)
        }
    }
    queue.waitUntilAllOperationsAreFinished()
    if let error = state.firstError { throw error }
    let lines = state.lines

    let jsonlURL = directory.appendingPathComponent("scenes.jsonl")
    do { try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: jsonlURL, options: .atomic) } catch {
        throw ShapesWorldError.io(path: jsonlURL.path, reason: "cannot write the scene list (\(error.localizedDescription))")
    }
}

/// The export's shared progress, guarded by a lock (batches finish on several threads).
private final class ExportState: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String]
    private var _firstError: Error?
    private var done = 0

    init(count: Int) { _lines = [String](repeating: "", count: count) }

    var failed: Bool { lock.lock(); defer { lock.unlock() }; return _firstError != nil }
    var firstError: Error? { lock.lock(); defer { lock.unlock() }; return _firstError }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return _lines }

    func fail(_ error: Error) {
        lock.lock(); defer { lock.unlock() }
        if _firstError == nil { _firstError = error }
    }

    /// Stores a finished batch's JSON lines and reports progress (under the lock, so calls never overlap).
    func finish(_ range: Range<Int>, lines batchLines: [String], progress: ((Int, Int) -> Void)?) {
        lock.lock(); defer { lock.unlock() }
        for (k, index) in range.enumerated() { _lines[index] = batchLines[k] }
        done += range.count
        progress?(done, _lines.count)
    }
}
