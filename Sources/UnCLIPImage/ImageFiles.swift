import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading and writing the bytes of image files, with the limits and the atomic replacement every caller shares.
///
/// Writing behaves as `cp` does: a symlink is followed and its target replaced; a FIFO or a device is written into;
/// a regular file (or a new name) is replaced atomically (a temporary file beside it, fsynced, then renamed), so a
/// crash or a kill never leaves a partial file under the output name.
public enum ImageFiles {
    /// The largest file read as an image (a 16384 × 16384 PNG compresses far below this); bounds what reading a
    /// device such as /dev/zero may allocate.
    public static let maxFileBytes = 1 << 28

    /// The bytes of `url`, which must exist and not be a directory.
    public static func read(_ url: URL) throws -> Data {
        let path = url.path
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw errno == ENOENT ? ImageError.missing(file: path) : ImageError.io(file: path, reason: "cannot read the file (\(String(cString: strerror(errno))))")
        }
        if info.st_mode & S_IFMT == S_IFDIR { throw ImageError.io(file: path, reason: "is a directory, not an image file") }
        if info.st_mode & S_IFMT == S_IFREG, Int(info.st_size) > maxFileBytes {
            throw ImageError.io(file: path, reason: "the file has \(info.st_size) bytes, more than the limit of \(maxFileBytes)")
        }
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw ImageError.io(file: path, reason: "cannot read the file (\(error.localizedDescription))")
        }
        defer { try? handle.close() }
        // Bounded even when the size is unknown (a FIFO, a device).
        let data: Data
        do { data = try handle.read(upToCount: maxFileBytes + 1) ?? Data() } catch {
            throw ImageError.io(file: path, reason: "cannot read the file (\(error.localizedDescription))")
        }
        guard data.count <= maxFileBytes else {
            throw ImageError.io(file: path, reason: "more than \(maxFileBytes) bytes, the limit for an image file")
        }
        return data
    }

    /// What writing `url` would touch: the path itself, or the final target of a symlink.
    static func target(of url: URL) -> String {
        var path = url.path
        for _ in 0..<40 {  // the kernel's own symlink limit
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(path, &buffer, buffer.count - 1)
            guard n > 0 else { break }
            let link = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            path = link.hasPrefix("/") ? link : (path as NSString).deletingLastPathComponent + "/" + link
        }
        return path
    }

    /// Whether `path` is a FIFO or a device, which is written into rather than replaced.
    static func isStream(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        let kind = info.st_mode & S_IFMT
        return kind == S_IFIFO || kind == S_IFCHR || kind == S_IFBLK
    }

    /// Throws `ImageError.cannotCreate` when `url` cannot be written: an empty name, a directory, a folder that does
    /// not exist or refuses a new file. Callers check every output before a long run, so nothing is computed (or
    /// half written) for an output that would fail.
    public static func checkWritable(_ url: URL) throws {
        guard !url.path.isEmpty, !url.lastPathComponent.isEmpty, url.lastPathComponent != "/" else {
            throw ImageError.cannotCreate(file: url.path, reason: "the name is empty")
        }
        let path = target(of: url)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { throw ImageError.cannotCreate(file: url.path, reason: "it is a directory") }
            if isStream(path) {
                guard access(path, W_OK) == 0 else { throw ImageError.cannotCreate(file: url.path, reason: String(cString: strerror(errno))) }
                return
            }
        }
        // A probe file, as the atomic write will create: access(2) says yes to root on a read-only file system.
        let folder = folder(of: path)
        let probe = folder + "/.unclip-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw ImageError.cannotCreate(file: url.path, reason: creationFailure(in: folder)) }
        close(fd)
        unlink(probe)
    }

    static func folder(of path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? "." : folder
    }

    /// Why a file could not be created in `folder`, just after the attempt (reads `errno`).
    static func creationFailure(in folder: String) -> String {
        let reason = String(cString: strerror(errno))
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else { return "the folder \(folder) does not exist" }
        guard isDirectory.boolValue else { return "\(folder) is not a folder" }
        return "cannot create a file in \(folder) (\(reason))"
    }

    /// Writes `data` to `url` as described above.
    public static func write(_ data: Data, to url: URL) throws {
        let path = target(of: url)
        func fail(_ what: String) -> ImageError {
            ImageError.cannotCreate(file: url.path, reason: "\(what) (\(String(cString: strerror(errno))))")
        }
        if isStream(path) {
            let fd = open(path, O_WRONLY)
            guard fd >= 0 else { throw fail("cannot open") }
            defer { close(fd) }
            try put(data, fd) { fail("cannot write") }
            return
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ImageError.cannotCreate(file: url.path, reason: "it is a directory")
        }
        let folder = folder(of: path)
        let temp = folder + "/.\((path as NSString).lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw ImageError.cannotCreate(file: url.path, reason: creationFailure(in: folder)) }
        do {
            try put(data, fd) { fail("cannot write") }
            guard fsync(fd) == 0 else { throw fail("fsync") }
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        close(fd)
        // The crash-safety test kills `unclip generate` here, between write and rename.
        stallIfAsked("UNCLIP_TEST_STALL_IMAGE_WRITE")
        guard rename(temp, path) == 0 else {
            let error = fail("cannot rename the temporary file")
            unlink(temp)
            throw error
        }
        syncFolder(folder)
    }

    private static func put(_ data: Data, _ fd: Int32, _ failure: () -> ImageError) throws {
        try data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = posixWrite(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; throw failure() }
                done += n
            }
        }
    }
}

/// Makes a rename in `folder` durable (best effort: some file systems refuse fsync on a directory).
func syncFolder(_ folder: String) {
    let fd = open(folder, O_RDONLY)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
}

/// Sleeps for the seconds the environment variable `name` gives, if any: a hook for the crash-safety tests, which
/// kill the process while a writer sits between its write and its rename. Unset in normal use.
func stallIfAsked(_ name: String) {
    guard let value = ProcessInfo.processInfo.environment[name], let seconds = Double(value), seconds > 0 else { return }
    usleep(useconds_t(min(seconds, 60) * 1_000_000))
}

// File scope: inside `ImageFiles` the name `write` is its own static method.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
