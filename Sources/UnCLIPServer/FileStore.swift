import Foundation
import UnCLIPModels

/// The PNGs behind `url` responses: files `<id>.png` in a directory, kept for a lifetime and under a byte cap.
///
/// Everything a replica needs is on disk (the id is the file name, the age is its modification time), so several
/// replicas can share one directory (docs/serving.md, "Replicas"): any of them serves any file.
public final class FileStore: Sendable {
    public let directory: URL
    /// How long a file is served after it was written (the API's 60 minutes).
    public let lifetime: TimeInterval
    /// The most bytes kept; past it the oldest files go first.
    public let byteLimit: Int
    /// The bytes written since the last sweep plus what that sweep found, so most saves need no directory scan.
    /// A save renames its file into place and counts it under this lock, and a sweep holds it throughout, so
    /// concurrent saves are never lost from the count (the cap holds under concurrent writes).
    private let state = Locked<(bytes: Int, lastSweep: Date)>((0, .distantPast))

    public init(directory: URL, lifetime: TimeInterval = 3600, byteLimit: Int = 1 << 30) throws {
        self.directory = directory
        self.lifetime = lifetime
        self.byteLimit = byteLimit
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        sweep()
    }

    /// A new id: 128 random bits from the system's cryptographic generator, as 32 lowercase hex digits.
    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
    }

    /// Whether `id` is one this store could have made. Checked before any path is built from it, so nothing a
    /// client sends ("../", "%2f", NUL) ever reaches the file system.
    static func isValidID(_ id: some StringProtocol) -> Bool {
        id.utf8.count == 32 && id.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// Stores `png` and returns its id. Written to a temporary name and renamed, so a reader never sees half a file.
    public func save(_ png: Data) throws -> String {
        let id = Self.newID()
        let temporary = directory.appendingPathComponent(".\(id).tmp")
        try png.write(to: temporary)
        let due = try state.withLock { s -> Bool in
            guard rename(temporary.path, url(of: id).path) == 0 else {
                try? FileManager.default.removeItem(at: temporary)
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url(of: id).path])
            }
            s.bytes += png.count
            return s.bytes > byteLimit || Date().timeIntervalSince(s.lastSweep) > 60
        }
        if due { sweep() }
        return id
    }

    /// The PNG of `id`, or nil when the id is malformed, unknown or expired.
    public func read(_ id: String) -> Data? {
        guard Self.isValidID(id) else { return nil }
        let file = url(of: id)
        // Only a regular file this store wrote: a symlink planted in the directory is never followed.
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file.path),
              attributes[.type] as? FileAttributeType == .typeRegular,
              let modified = attributes[.modificationDate] as? Date else { return nil }
        guard Date().timeIntervalSince(modified) <= lifetime else {
            try? FileManager.default.removeItem(at: file)
            return nil
        }
        return try? Data(contentsOf: file)
    }

    /// Deletes expired files (and temporaries left by a crash), then, once the total is over the cap, the oldest
    /// until it is under 90 % of it (so that a full store scans its directory every tenth of the cap, not every save).
    public func sweep() {
        state.withLock { s in s = (sweepLocked(), Date()) }
    }

    /// The sweep, under the state lock; returns the bytes kept.
    private func sweepLocked() -> Int {
        let keys: [URLResourceKey] = [.contentModificationDateKey, .fileSizeKey]
        let entries = (try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: keys)) ?? []
        let now = Date()
        var kept: [(url: URL, date: Date, size: Int)] = []
        for url in entries {
            let name = url.lastPathComponent
            let isImage = name.hasSuffix(".png") && Self.isValidID(name.dropLast(4))
            guard isImage || (name.hasPrefix(".") && name.hasSuffix(".tmp")) else { continue }  // not ours: leave it
            let values = try? url.resourceValues(forKeys: Set(keys))
            let date = values?.contentModificationDate ?? .distantPast, size = values?.fileSize ?? 0
            if now.timeIntervalSince(date) > (isImage ? lifetime : 600) {
                try? FileManager.default.removeItem(at: url)
            } else if isImage {
                kept.append((url, date, size))
            }
        }
        var total = kept.reduce(0) { $0 + $1.size }
        if total > byteLimit {
            let target = byteLimit / 10 * 9
            for file in kept.sorted(by: { $0.date < $1.date }) where total > target {
                try? FileManager.default.removeItem(at: file.url)
                total -= file.size
            }
        }
        return total
    }

    /// Bytes held now, as of the last sweep and the saves since.
    public var bytes: Int { state.withLock { $0.bytes } }

    private func url(of id: String) -> URL { directory.appendingPathComponent("\(id).png") }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
