import Foundation

/// One scratch file per process and name (in /dev/shm when there is one), rewritten for every input, for the
/// readers that take a path as the CLI's do.
public enum FuzzFile {
    static let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()

    public static func write(_ data: UnsafePointer<UInt8>, _ size: Int, name: String) -> URL {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("unclip-fuzz-\(getpid())-\(name)")
        try? Data(bytes: data, count: size).write(to: url)
        return url
    }
}
