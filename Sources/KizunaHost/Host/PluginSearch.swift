import Foundation
import Glibc

/// Finds manifests and plugin libraries in the host's search directories.
struct PluginSearch: Sendable {
    let directories: [String]
    let installDirectory: String

    /// Every `*.toml` file in the search directories, in search order.
    func manifestFiles() -> [String] {
        var files: [String] = []
        for directory in directories {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            files += names.filter { $0.hasSuffix(".toml") }.sorted().map { "\(directory)/\($0)" }
        }
        return files
    }

    /// The manifest for `nameOrPath`: a path to a manifest file, or a plugin name found as
    /// `NAME.toml` (or a manifest whose `name` is NAME) in the search directories.
    /// - Throws: ``PluginLoadError`` listing every path tried.
    func manifest(for nameOrPath: String) throws(PluginLoadError) -> PluginManifest {
        if nameOrPath.contains("/") || nameOrPath.hasSuffix(".toml") {
            do {
                return try PluginManifest(contentsOf: nameOrPath)
            } catch {
                throw PluginLoadError(.manifestInvalid, plugin: nil, file: error.location, error.detail)
            }
        }
        var tried: [String] = []
        for directory in directories {
            let candidate = "\(directory)/\(nameOrPath).toml"
            tried.append(candidate)
            if FileManager.default.fileExists(atPath: candidate) {
                do {
                    return try PluginManifest(contentsOf: candidate)
                } catch {
                    throw PluginLoadError(.manifestInvalid, plugin: nameOrPath, file: error.location, error.detail)
                }
            }
        }
        for file in manifestFiles() {
            if let manifest = try? PluginManifest(contentsOf: file), manifest.name == nameOrPath { return manifest }
        }
        throw PluginLoadError(
            .notFound, plugin: nameOrPath, file: nameOrPath,
            "no manifest for this plugin; tried \(tried.joined(separator: ", ")) and every *.toml in those directories. Put NAME.toml in the plugins directory, set KIZUNA_PLUGIN_PATH, or pass the manifest's path")
    }

    /// Where `manifest`'s library is: next to the manifest, else, when `library` is a bare
    /// file name, in the install directory. A path names one file, never a stand-in.
    /// - Throws: ``PluginLoadError`` listing every path tried when it is in neither.
    func library(for manifest: PluginManifest) throws(PluginLoadError) -> String {
        var candidates = [manifest.libraryPath]
        if manifest.libraryIsFileName, !manifest.libraryPath.hasPrefix(installDirectory + "/") {
            candidates.append("\(installDirectory)/\((manifest.libraryPath as NSString).lastPathComponent)")
        }
        // lstat, not stat: a link that loops or leads nowhere is still the file meant, and
        // opening it says what is wrong with it.
        if let found = candidates.first(where: { var status = stat(); return lstat($0, &status) == 0 }) { return found }
        throw PluginLoadError(
            .libraryMissing, plugin: manifest.name, file: manifest.path,
            "its library was not found; tried \(candidates.joined(separator: ", ")). Build the plugin, or fix 'library' in the manifest")
    }
}
