# Prints block-header test vectors computed independently of Ordo: pyasn1 DER + hashlib.
# The expected values in src/blockutil.rs come from this script.
import hashlib
from pyasn1.type import univ, namedtype
from pyasn1.codec.der import encoder
class Hdr(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType('number', univ.Integer()),
        namedtype.NamedType('previous_hash', univ.OctetString()),
        namedtype.NamedType('data_hash', univ.OctetString()))
def der(n, p, d):
    h = Hdr(); h['number'] = n; h['previous_hash'] = p; h['data_hash'] = d
    return encoder.encode(h)
print(der(0,b"",b"").hex(), der(128,b"\x01\x02",b"\x03").hex())
cases = [(0, b"", hashlib.sha256(b"genesis").digest()),
         (1, hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()),
         (255, b"\xff"*32, b"\x00"*32),
         (2**32, b"\x01"*32, b"\x02"*32),
         (2**63 + 5, b"\x80"*32, b"\x7f"*32),
         (2**64 - 1, b"", b"")]
for n,p,d in cases:
    print(n, p.hex(), d.hex(), hashlib.sha256(der(n,p,d)).hexdigest())
