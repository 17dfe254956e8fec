import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pickFreeThirdOctet } from "../harness/private-dockerd.js";

/** A random() that makes pickFreeThirdOctet try these third octets in order. */
function tries(...octets: number[]): () => number {
  let i = 0;
  return () => ((octets[i++] ?? 1) - 0.5) / 254;
}

describe("private dockerd bridge subnet: a 10.213.X.0/24 no route overlaps", () => {
  const cases: { name: string; taken: string[]; order: number[]; want: number }[] = [
    { name: "nothing routed there", taken: ["172.17.0.0/16", "192.0.2.0/24"], order: [5], want: 5 },
    { name: "the same /24 taken", taken: ["10.213.5.0/24"], order: [5, 6], want: 6 },
    { name: "a host route inside it", taken: ["10.213.7.9/32"], order: [7, 8], want: 8 },
    { name: "a wider route around it", taken: ["10.213.0.0/20"], order: [3, 15, 16], want: 16 },
    {
      name: "a route whose address is not the network's",
      taken: ["10.213.9.77/24"],
      order: [9, 10],
      want: 10,
    },
    { name: "the neighbours taken", taken: ["10.213.4.0/24", "10.213.6.0/24"], order: [5], want: 5 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.equal(pickFreeThirdOctet(c.taken, tries(...c.order)), c.want);
    });
  }

  it("fails with a clear message when the whole range is routed", () => {
    assert.throws(() => pickFreeThirdOctet(["10.0.0.0/8"]), /no free \/24 in 10\.213\.0\.0\/16/);
  });
});
