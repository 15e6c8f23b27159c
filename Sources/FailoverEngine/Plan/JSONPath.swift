/// A location in a JSON document, written the way people read it: `$.sites[1].instances[0].port`.
///
/// Keys that are not plain identifiers are written in brackets, `$["odd key"]`, so every path names
/// exactly one place.
public struct JSONPath: Sendable, Hashable, CustomStringConvertible {
    /// One step down into an object or an array.
    public enum Component: Sendable, Hashable {
        /// A member of an object.
        case key(String)
        /// An element of an array, counted from 0.
        case index(Int)
    }

    /// The steps from the root, outermost first.
    public var components: [Component]

    /// The document's root, `$`.
    public static let root = JSONPath(components: [])

    /// Creates a path from its steps.
    public init(components: [Component]) { self.components = components }

    /// The path of the member `key` of the object at this path.
    public func appending(_ key: String) -> JSONPath { JSONPath(components: components + [.key(key)]) }

    /// The path of element `index` of the array at this path.
    public func appending(_ index: Int) -> JSONPath { JSONPath(components: components + [.index(index)]) }

    /// The path as text, e.g. `$.transitions[2].to`.
    public var description: String {
        var text = "$"
        for component in components {
            switch component {
            case .index(let i): text += "[\(i)]"
            case .key(let key) where Self.isIdentifier(key): text += "." + key
            case .key(let key): text += "[" + Self.quoted(key) + "]"
            }
        }
        return text
    }

    private static func isIdentifier(_ key: String) -> Bool {
        guard let first = key.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic)
        else { return false }
        return key.unicodeScalars.allSatisfy {
            $0 == "_" || ($0.isASCII && $0.properties.isAlphabetic) || ("0"..."9").contains($0)
        }
    }

    private static func quoted(_ key: String) -> String { JSONString.literal(key) }
}
