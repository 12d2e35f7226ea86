import Foundation
import Glibc

/// The partial files beneath the receive directory (`.NAME.kizuna-partial-KEY`): what
/// interrupted transfers left, kept so that sending again resumes. Since a sender's id
/// lasts across restarts, one comes back for them; those that nothing resumed for the
/// setting `partial-max-age-days` (default 7) are removed.
enum PartialFiles {
    static let marker = ".kizuna-partial-"

    /// What the partial files hold, and how many of them were removed.
    struct Sweep: Sendable {
        var files = 0
        var bytes: Int64 = 0
        var removed = 0
        var removedBytes: Int64 = 0
    }

    /// Counts the partial files beneath `root` (links are never followed) and removes
    /// those last written before `cutoff` (seconds since the epoch), if one is given.
    static func sweep(_ root: String, removingOlderThan cutoff: Int? = nil) -> Sweep {
        var result = Sweep()
        guard let walk = FileManager.default.enumerator(atPath: root) else { return result }
        while let relative = walk.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            guard name.hasPrefix("."), name.contains(marker) else { continue }
            let path = "\(root)/\(relative)"
            var status = stat()
            guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { continue }
            if let cutoff, status.st_mtim.tv_sec < cutoff, unlink(path) == 0 {
                result.removed += 1
                result.removedBytes += Int64(status.st_size)
                continue
            }
            result.files += 1
            result.bytes += Int64(status.st_size)
        }
        return result
    }
}
