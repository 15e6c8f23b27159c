/// A capture of what a former primary wrote past the fork, or the operator's override that skipped it.
public struct CaptureEvidence: StepEvidence {
    /// `lost/RUN/INSTANCE`, in the state directory; nil when skipped.
    public var directory: String?
    /// Where the histories part (`0/3006A70`), `unknown` when it could not be known.
    public var fork: String
    /// The former primary has WAL past the fork (`true`), or its WAL ends at or before it (`false`).
    public var diverged: String
    /// Bytes of WAL captured.
    @TextCoded public var walBytes: UInt64
    /// Transactions committed after the fork.
    @TextCoded public var transactions: Int
    /// Where the WAL came from.
    public var walFrom: String
    /// Row images: `decoded`, `not asked …` or `unavailable: …`.
    public var rows: String
    /// The SHA-256 of the capture's manifest (capture.json).
    public var manifestSHA256: String?
    /// Why no capture was made (the operator's --skip-lost-capture).
    public var skipped: String?

    /// Creates the evidence.
    public init(
        directory: String?, fork: String, diverged: Bool, walBytes: UInt64, transactions: Int, walFrom: String, rows: String,
        manifestSHA256: String?,
        skipped: String? = nil
    ) {
        self.directory = directory
        self.fork = fork
        self.diverged = String(diverged)
        self.walBytes = walBytes
        self.transactions = transactions
        self.walFrom = walFrom
        self.rows = rows
        self.manifestSHA256 = manifestSHA256
        self.skipped = skipped
    }
}

/// failoverd's logical slots recreated on the new primary.
public struct LostSlotEvidence: StepEvidence {
    /// The slots, `name@database`, comma-separated.
    public var slots: String
    /// Where they start decoding.
    public var confirmedFlushLSN: String
    /// Instances whose stale failoverd slots were dropped, comma-separated.
    public var droppedOn: String
}
