/// A growable byte buffer written with memcpy, freed when it goes out of scope: the audit encoder assembles
/// every event in one, reused from event to event.
struct ByteBuffer: ~Copyable {
    private(set) var base: UnsafeMutablePointer<UInt8>
    /// The bytes written so far.
    var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// The bytes written so far, valid until the next write.
    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }

    /// Forgets the bytes written, keeping the memory.
    mutating func removeAll() { count = 0 }

    mutating func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        let grown = max(capacity * 2, count + n)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
        bigger.update(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity = grown
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let from = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        (base + count).update(from: from, count: bytes.count)
        count += bytes.count
    }

    mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    /// Appends a literal's UTF-8 bytes.
    mutating func append(_ literal: StaticString) {
        append(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Appends `n` in decimal, as `String(n)` writes it.
    mutating func appendDecimal(_ n: Int64) {
        if n < 0 {
            append(0x2D)
            // The magnitude of Int64.min does not fit an Int64: go through UInt64.
            appendDigits(UInt64(bitPattern: 0 &- n))
        } else {
            appendDigits(UInt64(n))
        }
    }

    private mutating func appendDigits(_ value: UInt64) {
        reserve(20)
        var v = value
        var digits = 0
        repeat {
            base[count + digits] = 0x30 &+ UInt8(v % 10)
            v /= 10
            digits += 1
        } while v > 0
        // Written least significant first: reverse in place.
        var i = count
        var j = count + digits - 1
        while i < j {
            let t = base[i]
            base[i] = base[j]
            base[j] = t
            i += 1
            j -= 1
        }
        count += digits
    }
}
