import { describe, expect, it } from 'vitest';
import { GravityError } from '../core/errors.js';
import { estimateRequestTokens } from '../core/prompt-size.js';
import { requestFeatures } from '../core/request-features.js';
import { maxEmbeddingInputs, parseEmbeddingRequest } from './request-schemas.js';

function refusal(body: unknown): GravityError {
  try {
    parseEmbeddingRequest(body);
  } catch (error) {
    if (error instanceof GravityError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('parseEmbeddingRequest', () => {
  it('reads each shape of input OpenAI accepts as a list of inputs', () => {
    const inputsOf = (input: unknown) => {
      const parsed = parseEmbeddingRequest({ model: 'm', input });
      return parsed.generation.input.kind === 'embedding' ? parsed.generation.input.inputs : null;
    };
    expect(inputsOf('one text')).toEqual(['one text']);
    expect(inputsOf(['a', 'b'])).toEqual(['a', 'b']);
    // An array of numbers is one input given as token ids, not several.
    expect(inputsOf([1, 2, 3])).toEqual([[1, 2, 3]]);
    expect(inputsOf([[1, 2], [3]])).toEqual([[1, 2], [3]]);
  });

  it('defaults to float vectors of the model’s own width, and lists the embeddings feature', () => {
    const parsed = parseEmbeddingRequest({ model: 'm', input: 'x' });
    expect(parsed.generation.input).toEqual({
      kind: 'embedding',
      inputs: ['x'],
      encodingFormat: 'float',
      dimensions: null,
    });
    expect(parsed.generation.features).toEqual([requestFeatures.embeddings]);
    expect(parsed.generation.maxTokens).toBe(0);
    expect(parsed.stream).toBe(false);
    expect(parsed.serviceTier).toBe('auto');
  });

  it('lists dimensions and vendor extras as features and carries the body less the fields Gravity owns', () => {
    const body = {
      model: 'm',
      input: ['x'],
      encoding_format: 'base64',
      dimensions: 8,
      user: 'u',
      service_tier: 'flex',
      truncate_prompt_tokens: 16,
    };
    const parsed = parseEmbeddingRequest(body);
    expect(parsed.generation.features).toEqual([
      requestFeatures.embeddings,
      requestFeatures.dimensions,
      'truncate_prompt_tokens',
    ]);
    expect(parsed.generation.input).toMatchObject({ encodingFormat: 'base64', dimensions: 8 });
    expect(parsed.generation.user).toBe('u');
    expect(parsed.serviceTier).toBe('flex');
    expect(parsed.generation.carried).toEqual({
      input: ['x'],
      encoding_format: 'base64',
      dimensions: 8,
      user: 'u',
      truncate_prompt_tokens: 16,
    });
  });

  it('refuses empty inputs as OpenAI does, naming input', () => {
    for (const input of ['', [], [''], ['a', ''], [[]], [[1], []]]) {
      const error = refusal({ model: 'm', input });
      expect(error.status).toBe(400);
      expect(error.param).toBe('input');
      expect(error.message).toMatch(/must not be an empty/);
    }
  });

  it('refuses inputs of the wrong shape with the position of the offending value', () => {
    expect(refusal({ model: 'm', input: 5 }).message).toMatch(/Invalid type for 'input': an integer/);
    expect(refusal({ model: 'm', input: { text: 'x' } }).message).toMatch(/'input': an object/);
    expect(refusal({ model: 'm', input: ['a', 1] }).message).toMatch(/'input\[1\]': an integer/);
    expect(refusal({ model: 'm', input: [1, -2] }).message).toMatch(/'input\[1\]': -2 is not a token id/);
    expect(refusal({ model: 'm', input: [1, 1.5] }).message).toMatch(/1.5 is not a token id/);
    expect(refusal({ model: 'm', input: [[1], [2, 'x']] }).message).toMatch(/'input\[1\]\[1\]'/);
    expect(refusal({ model: 'm', input: [[1], 'x'] }).message).toMatch(/'input\[1\]': a string/);
  });

  it(`refuses more than ${maxEmbeddingInputs} inputs in one request`, () => {
    const error = refusal({ model: 'm', input: Array.from({ length: maxEmbeddingInputs + 1 }, () => 'x') });
    expect(error.param).toBe('input');
    expect(error.message).toMatch(/2049 inputs, more than the 2048 allowed/);
    // A single token-id input may be longer: its limit is the model's context.
    expect(() =>
      parseEmbeddingRequest({ model: 'm', input: Array.from({ length: 3000 }, () => 1) }),
    ).not.toThrow();
  });

  it('checks model, encoding_format and dimensions', () => {
    expect(refusal({ input: 'x' }).code).toBe('missing_required_parameter');
    expect(refusal({ model: 'm' }).param).toBe('input');
    expect(refusal({ model: 'm', input: 'x', encoding_format: 'int8' }).param).toBe('encoding_format');
    expect(refusal({ model: 'm', input: 'x', dimensions: 0 }).param).toBe('dimensions');
    expect(refusal({ model: 'm', input: 'x', dimensions: 1.5 }).message).toMatch(/integer/);
    expect(refusal([{ model: 'm', input: 'x' }]).status).toBe(400);
  });

  it('sizes the request as the sum of its inputs, token ids counting as themselves', () => {
    const parsed = parseEmbeddingRequest({ model: 'm', input: [[1, 2, 3], [4]] });
    expect(estimateRequestTokens(parsed.generation)).toBe(4);
    const texts = parseEmbeddingRequest({ model: 'm', input: ['abcdefgh', 'abcd'] });
    expect(estimateRequestTokens(texts.generation)).toBe(3);
  });
});
