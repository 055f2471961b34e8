import ArgumentParser
import Foundation
import UnCLIPImage

/// An output that would overwrite one of the command's inputs (`vary in.png -o in.png`).
struct OutputConflict: Error, CustomStringConvertible {
    var output: String
    var input: String
    var description: String {
        "the output \(output) is the input \(input); choose another -o (the input would be overwritten)"
    }
}

/// The files a command writes, checked before the model loads: each one writable and none an input, so that a run
/// never fails (or overwrites its input) after minutes of sampling, and a grid that cannot be written leaves no
/// numbered files behind.
struct OutputPlan {
    var files: [URL]
    /// The `-o` value as given (an empty one is a usage error, not the current directory).
    var given: String = ""

    /// `path` alone for one image; otherwise numbered files beside it (`out-1.png`, …) and, at `path`, the grid.
    static func images(at path: String, count: Int, alwaysGrid: Bool = false) -> OutputPlan {
        let url = URL(fileURLWithPath: path)
        guard count > 1 || alwaysGrid else { return OutputPlan(files: [url], given: path) }
        return OutputPlan(files: numbered(path, count: count) + [url], given: path)
    }

    /// `stem-1.ext` … `stem-count.ext` beside `path` (png when it has no extension).
    static func numbered(_ path: String, count: Int) -> [URL] {
        let url = URL(fileURLWithPath: path)
        let stem = url.deletingPathExtension().path, ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        return (0..<count).map { URL(fileURLWithPath: "\(stem)-\($0 + 1).\(ext)") }
    }

    /// Throws for the first output that cannot be written or that is one of `inputs`.
    func check(inputs: [String?]) throws {
        guard !given.isEmpty else { throw ValidationError("-o: the output file name is empty") }
        let inputs = inputs.compactMap { $0 }
        for file in files {
            if let input = inputs.first(where: { Self.sameFile(file.path, $0) }) {
                throw OutputConflict(output: file.path, input: input)
            }
            try ImageFiles.checkWritable(file)
        }
    }

    /// Whether two paths name one file: the same inode when both exist, else the same resolved path.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        if stat(a, &sa) == 0, stat(b, &sb) == 0 { return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino }
        return URL(fileURLWithPath: a).standardizedFileURL.resolvingSymlinksInPath().path
            == URL(fileURLWithPath: b).standardizedFileURL.resolvingSymlinksInPath().path
    }
}
