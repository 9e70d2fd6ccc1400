import { describe, expect, it } from 'vitest';
import {
  featureParameter,
  firstUnservedFeature,
  responsesNativeFeatures,
  servesFeature,
  unservedFeatureError,
} from './request-features.js';

/** The three kinds of engine Gravity has, as their declarations read. */
const chatOnlyAllowList = { servedFeatures: new Set(['tools', 'logprobs']) };
const plainUpstream = { unservedFeatures: responsesNativeFeatures };
const nativeResponsesUpstream = {};

describe('request features', () => {
  it('serves a feature its allow-list lets in and its deny-list does not name, by name or family', () => {
    expect(servesFeature(chatOnlyAllowList, 'tools')).toBe(true);
    expect(servesFeature(chatOnlyAllowList, 'tools.web_search')).toBe(false);
    expect(servesFeature(plainUpstream, 'top_k')).toBe(true);
    expect(servesFeature(plainUpstream, 'custom_tools')).toBe(true);
    for (const feature of ['tools.web_search', 'tool_choice.mcp', 'input.item_reference', 'max_tool_calls'])
      expect(servesFeature(plainUpstream, feature)).toBe(false);
    expect(servesFeature(plainUpstream, 'include.file_search_call.results')).toBe(false);
    expect(servesFeature(nativeResponsesUpstream, 'tools.web_search')).toBe(true);
  });

  it('finds the first feature a declaration does not serve', () => {
    const features = ['tools', 'top_k', 'tools.web_search'];
    expect(firstUnservedFeature(features, chatOnlyAllowList)).toBe('top_k');
    expect(firstUnservedFeature(features, plainUpstream)).toBe('tools.web_search');
    expect(firstUnservedFeature(features, nativeResponsesUpstream)).toBeNull();
  });

  it('names the parameter and what it asks for in the 400', () => {
    expect(featureParameter('tools.web_search')).toBe('tools');
    expect(featureParameter('include.web_search_call.action.sources')).toBe('include');
    expect(featureParameter('prompt.tokens')).toBe('prompt');
    expect(featureParameter('custom_tools')).toBe('tools');
    expect(featureParameter('web_search_options')).toBe('web_search_options');
    const error = unservedFeatureError('tools.web_search', "engine 'local' (llama-cpp)");
    expect(error.status).toBe(400);
    expect(error.param).toBe('tools');
    expect(error.message).toMatch(
      /^Unsupported parameter: 'tools' \(built-in tool 'web_search'\) is not served by engine 'local' \(llama-cpp\)\./,
    );
    expect(unservedFeatureError('input.computer_call_output', 'x').message).toContain(
      "'input' (input item 'computer_call_output')",
    );
    expect(unservedFeatureError('include.file_search_call.results', 'x').message).toContain(
      "'include' ('file_search_call.results')",
    );
  });
});
