/// JSON string literals, written one way everywhere: the audit chain hashes them, so this form is fixed.
/// Quotes, backslash and control characters are escaped (`\n`, `\r`, `\t`, else `\u00XX` in lower-case hex),
/// every other byte is kept as is. Working on UTF-8 bytes is exact: in UTF-8 the bytes below 0x20, `"` and
/// `\` never occur inside a multi-byte character.
enum JSONString {
    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// `s` as a JSON string literal.
    static func literal(_ s: String) -> String {
        var s = s
        return s.withUTF8 { utf8 in
            var buffer = ByteBuffer(capacity: utf8.count + 2)
            append(utf8, to: &buffer)
            return String(decoding: buffer.bytes, as: UTF8.self)
        }
    }

    /// Appends the UTF-8 text `s` to `buffer` as a JSON string literal, quotes included.
    static func append(_ s: UnsafeBufferPointer<UInt8>, to buffer: inout ByteBuffer) {
        buffer.append(0x22)
        if !s.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            buffer.append(s)
        } else {
            for b in s {
                switch b {
                case 0x22: buffer.append("\\\"")
                case 0x5C: buffer.append("\\\\")
                case 0x0A: buffer.append("\\n")
                case 0x0D: buffer.append("\\r")
                case 0x09: buffer.append("\\t")
                case 0..<0x20:
                    buffer.append("\\u00")
                    buffer.append(hexDigits[Int(b >> 4)])
                    buffer.append(hexDigits[Int(b & 0x0F)])
                default: buffer.append(b)
                }
            }
        }
        buffer.append(0x22)
    }
}
