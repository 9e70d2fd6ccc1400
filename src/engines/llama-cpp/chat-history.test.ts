import { describe, expect, it } from 'vitest';
import { chatHistory } from './chat-history.js';

const weather = { name: 'get_weather', description: 'The weather', parameters: { type: 'object' } };

describe('chatHistory', () => {
  it('puts the tools and the calling convention into the system message', () => {
    const history = chatHistory(
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
      ],
      [weather],
      'auto',
    );
    expect(history[0]).toMatchObject({ type: 'system' });
    const text = (history[0] as { text: string }).text;
    expect(text.startsWith('Be brief.')).toBe(true);
    expect(text).toContain('get_weather: The weather');
    expect(text).toContain('[{"name": "<tool name>", "arguments"');
    expect(history.at(-1)).toEqual({ type: 'model', response: [] });
  });

  it('writes earlier calls as the array the grammar enforces and results as turns naming their call', () => {
    const history = chatHistory(
      [
        { role: 'user', content: 'Oslo?' },
        {
          role: 'assistant',
          content: '',
          toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Oslo"}' }],
        },
        { role: 'tool', content: 'sunny', toolCallId: 'call_1' },
      ],
      [weather],
      'none',
    );
    expect(history).toEqual([
      { type: 'user', text: 'Oslo?' },
      { type: 'model', response: ['[{"name": "get_weather", "arguments": {"city":"Oslo"}}]'] },
      { type: 'user', text: 'Result of get_weather (call call_1):\nsunny' },
      { type: 'model', response: [] },
    ]);
  });
});
