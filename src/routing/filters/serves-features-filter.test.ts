import { describe, expect, it } from 'vitest';
import { responsesNativeFeatures } from '../../core/request-features.js';
import { servesFeaturesFilter } from './serves-features-filter.js';

const chatOnlyAllowList = { servedFeatures: new Set(['tools', 'logprobs']) };
const plainUpstream = { unservedFeatures: responsesNativeFeatures };
const nativeResponsesUpstream = {};

describe('serves-features filter', () => {
  it('keeps routing off a replica whose deny-list names a feature the request uses', () => {
    const filter = servesFeaturesFilter.create();
    const request = { features: ['tools.web_search'] } as never;
    const replica = (declaration: object) => declaration as never;
    expect(filter.accepts(request, replica(plainUpstream))).toBe(false);
    expect(filter.accepts(request, replica(chatOnlyAllowList))).toBe(false);
    expect(filter.accepts(request, replica(nativeResponsesUpstream))).toBe(true);
    expect(filter.rejection(request)).toBe("no replica serves 'tools'");
  });
});
